"""Protocol adapters between the model and its blocks (see ``base.py``)."""

from multitask_vision.models.adapters.base import BlockAdapter, default_adapter
from multitask_vision.models.adapters.native import NativeAdapter
from multitask_vision.models.adapters.openmmlab import MMDetAdapter, MMSegAdapter
from multitask_vision.models.adapters.timm import TimmAdapter

__all__ = ["BlockAdapter", "MMDetAdapter", "MMSegAdapter", "NativeAdapter", "TimmAdapter", "default_adapter"]
