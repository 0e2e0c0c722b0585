"""Training-loop plumbing on mmengine: hooks."""

from multitask_vision.engine.hooks import MetricsJSONHook, TaskCoverageHook

__all__ = ["MetricsJSONHook", "TaskCoverageHook"]
