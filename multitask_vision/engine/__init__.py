"""Training-loop plumbing on mmengine: hooks."""

from multitask_vision.engine.hooks import MetricsJSONHook, TaskCoverageHook
from multitask_vision.engine.vis_hooks import CurvesHook, MultiTaskVisualizationHook

__all__ = ["CurvesHook", "MetricsJSONHook", "MultiTaskVisualizationHook", "TaskCoverageHook"]
