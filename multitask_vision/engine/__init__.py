"""Training-loop plumbing on mmengine: hooks, the DDP wrapper, resuming."""

from multitask_vision.engine.ddp import MultiTaskDistributedDataParallel
from multitask_vision.engine.hooks import MetricsJSONHook, NonFiniteGuardHook, TaskCoverageHook
from multitask_vision.engine.vis_hooks import CurvesHook, MultiTaskVisualizationHook

__all__ = [
    "CurvesHook",
    "MetricsJSONHook",
    "MultiTaskDistributedDataParallel",
    "MultiTaskVisualizationHook",
    "NonFiniteGuardHook",
    "TaskCoverageHook",
]
