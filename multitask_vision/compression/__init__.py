"""Deployment: pruning, quantization and export steps (registered in ``COMPRESSION``), the runtime helper and
the report. ``deploy.py`` runs them from a deploy config (:mod:`multitask_vision.compression.config`)."""

from multitask_vision.compression.export import ExportWrapper, OnnxExport, TorchScriptExport
from multitask_vision.compression.pruning import (
    PhysicalPruning,
    StructuredPruning,
    UnstructuredPruning,
    load_pruned,
    save_pruned,
)
from multitask_vision.compression.quantization import DynamicQuantization, QATQuantization, StaticQuantization

__all__ = [
    "DynamicQuantization",
    "ExportWrapper",
    "OnnxExport",
    "PhysicalPruning",
    "QATQuantization",
    "StaticQuantization",
    "StructuredPruning",
    "TorchScriptExport",
    "UnstructuredPruning",
    "load_pruned",
    "save_pruned",
]
