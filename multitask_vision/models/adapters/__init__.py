"""Protocol adapters between the model and its blocks (see ``base.py``)."""

from multitask_vision.models.adapters.base import DEFAULT_ADAPTERS, BlockAdapter
from multitask_vision.models.adapters.native import NativeAdapter
from multitask_vision.models.adapters.openmmlab import MMDetAdapter, MMSegAdapter

__all__ = ["DEFAULT_ADAPTERS", "BlockAdapter", "MMDetAdapter", "MMSegAdapter", "NativeAdapter"]
