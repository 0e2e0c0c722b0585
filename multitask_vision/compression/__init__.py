"""Deployment: pruning, quantization and export steps (registered in ``COMPRESSION``), quantization-aware
training (``QATHook``), the runtime helper, the report, and the pipeline that runs them from a deploy config
(:mod:`multitask_vision.compression.pipeline`, what ``deploy.py`` calls)."""

from multitask_vision.compression.export import ExportWrapper, OnnxExport, TorchScriptExport
from multitask_vision.compression.pruning import (
    PhysicalPruning,
    StructuredPruning,
    UnstructuredPruning,
    load_pruned,
    save_pruned,
)
from multitask_vision.compression.qat_hook import QATHook
from multitask_vision.compression.quantization import DynamicQuantization, QATQuantization, StaticQuantization

__all__ = [
    "DynamicQuantization",
    "ExportWrapper",
    "OnnxExport",
    "PhysicalPruning",
    "QATHook",
    "QATQuantization",
    "StaticQuantization",
    "StructuredPruning",
    "TorchScriptExport",
    "UnstructuredPruning",
    "load_pruned",
    "save_pruned",
]
