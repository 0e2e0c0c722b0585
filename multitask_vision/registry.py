"""Registries of multitask-vision: children of mmengine's roots, scope ``multitask_vision``.

This module imports nothing of the package: every module registers itself here. How a block's ``type`` is
resolved across our registry and mmdet's/mmseg's is :mod:`multitask_vision.models.block_types`.
"""

from __future__ import annotations

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

SCOPE = "multitask_vision"

MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE, locations=[f"{SCOPE}.models"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE, locations=[f"{SCOPE}.datasets"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=[f"{SCOPE}.datasets"])
DATA_SAMPLERS = Registry(
    "data sampler", parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE, locations=[f"{SCOPE}.datasets"]
)
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=[f"{SCOPE}.evaluation"])
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope=SCOPE, locations=[f"{SCOPE}.evaluation"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=SCOPE, locations=[f"{SCOPE}.engine"])
# Nothing registers here: it exists because the Runner builds the config's `visualizer` from the registry of
# the default scope, and mmengine warns ("Failed to search registry with scope ...") when that scope has none.
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope=SCOPE, locations=[f"{SCOPE}.engine"])
# How a task's predictions and ground truth are drawn (visualize.py, MultiTaskVisualizationHook): one drawer
# per kind of data-sample field (pred_instances, pred_sem_seg, pred_depth_map, ...).
DRAWERS = Registry("task drawer", scope=SCOPE, locations=[f"{SCOPE}.visualization"])
# How a block is called and how a head's loss/predictions are computed: one adapter per protocol.
ADAPTERS = Registry("adapter", scope=SCOPE, locations=[f"{SCOPE}.models.adapters"])
# Deployment steps (pruning, quantization, export): registered objects with typed keyword arguments.
COMPRESSION = Registry("compression step", scope=SCOPE, locations=[f"{SCOPE}.compression"])
