"""Training-loop plumbing on mmengine: hooks."""

from multitask_vision.engine.hooks import TaskCoverageHook

__all__ = ["TaskCoverageHook"]
