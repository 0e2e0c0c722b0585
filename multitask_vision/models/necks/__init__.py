"""Native necks: multi-level feature fusion."""

from multitask_vision.models.necks.fpn import FPN
from multitask_vision.models.necks.refinenet import ChainedResidualPooling, RefineNetDecoder

__all__ = ["FPN", "ChainedResidualPooling", "RefineNetDecoder"]
