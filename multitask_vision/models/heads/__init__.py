"""Native task heads: detection (FCOS-style), semantic segmentation and depth."""

from multitask_vision.models.heads.dense_head import DenseHead
from multitask_vision.models.heads.depth_head import DepthHead
from multitask_vision.models.heads.det_head import AnchorFreeDetHead
from multitask_vision.models.heads.seg_head import SegHead

__all__ = ["AnchorFreeDetHead", "DenseHead", "DepthHead", "SegHead"]
