"""Protocol adapters between the model and its blocks (see ``base.py``)."""

from multitask_vision.models.adapters.base import DEFAULT_ADAPTERS, BlockAdapter
from multitask_vision.models.adapters.native import NativeAdapter

__all__ = ["DEFAULT_ADAPTERS", "BlockAdapter", "NativeAdapter"]
