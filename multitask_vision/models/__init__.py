"""Models: the block graph, the multi-task model, adapters and native blocks."""

from multitask_vision.models import adapters, backbones, heads, losses, necks, task_weighting  # noqa: F401  (registration)
from multitask_vision.models.data_preprocessor import MultiTaskDataPreprocessor
from multitask_vision.models.graph import BlockGraph, GraphError
from multitask_vision.models.multitask_model import MultiTaskModel

__all__ = ["BlockGraph", "GraphError", "MultiTaskDataPreprocessor", "MultiTaskModel"]
