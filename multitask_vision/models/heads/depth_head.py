"""Monocular depth head: bounded positive depth in metres, L1 + scale-invariant log loss on valid pixels."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from mmengine.structures import PixelData
from torch import Tensor

from multitask_vision.models.heads.decoding import decode_depth
from multitask_vision.models.heads.dense_head import DenseHead
from multitask_vision.models.heads.utils import resize, stack_pixel_gt
from multitask_vision.models.losses import build_loss
from multitask_vision.registry import MODELS

DEFAULT_LOSS_L1 = MappingProxyType(dict(type="mmdet.L1Loss", loss_weight=1.0))
DEFAULT_LOSS_SILOG = MappingProxyType(dict(type="SILogLoss", variance_focus=0.85, loss_weight=1.0))


@MODELS.register_module(name=["DepthHead", "DenseDepthHead"])  # DenseDepthHead: the origin README's name
class DepthHead(DenseHead):
    """``forward(x) -> depth (B, 1, H / s, W / s)`` in metres, ``min_depth + (max_depth - min_depth) * sigmoid``.

    Ground truth ``gt_depth_map`` is valid where ``min_depth <= depth <= max_depth`` (0, the padding value, and
    anything beyond ``max_depth`` are ignored). Losses, on valid pixels at the batch input size, each called
    as ``loss(pred (B, 1, H, W), gt (B, 1, H, W), weight=valid mask, ...)``:

    * ``loss_depth_l1`` (``loss_l1``, default ``mmdet.L1Loss`` with ``avg_factor`` = the batch's valid pixels):
      mean absolute error over the batch's valid pixels;
    * ``loss_depth_silog`` (``loss_silog``, default :class:`~multitask_vision.models.losses.SILogLoss`):
      scale-invariant log error per image, averaged over the images that have valid pixels.

    A term set to ``None`` is not computed nor returned; at least one must be set.

    Args:
        in_channels, channels, num_convs: see :class:`DenseHead`.
        max_depth, min_depth: output range and validity range of the ground truth, in metres.
        loss_l1, loss_silog: loss configs of the two terms (or ``None``).
    """

    output_names = "depth"

    def __init__(
        self,
        *,
        in_channels: int | list[int],
        channels: int = 64,
        num_convs: int = 1,
        max_depth: float = 10.0,
        min_depth: float = 1e-3,
        loss_l1: Mapping[str, Any] | None = DEFAULT_LOSS_L1,
        loss_silog: Mapping[str, Any] | None = DEFAULT_LOSS_SILOG,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=1, channels=channels, num_convs=num_convs)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"DepthHead: need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if loss_l1 is None and loss_silog is None:
            raise ValueError("DepthHead: loss_l1 and loss_silog are not both None: set at least one loss")
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.loss_l1 = None if loss_l1 is None else build_loss(loss_l1, "DepthHead: loss_l1")
        self.loss_silog = None if loss_silog is None else build_loss(loss_silog, "DepthHead: loss_silog")

    def forward(self, x) -> Tensor:
        raw = self.forward_raw(x)  # (B, 1, h, w)
        return self.min_depth + (self.max_depth - self.min_depth) * raw.sigmoid()

    def loss(self, x, data_samples: list) -> dict[str, Tensor]:
        gt = stack_pixel_gt(data_samples, "gt_depth_map").float()  # (B, 1, H, W) at the batch input size
        pred = resize(self(x).float(), gt.shape[-2:])  # (B, 1, H, W)
        valid = (gt >= self.min_depth) & (gt <= self.max_depth)  # NaN compares False: invalid too
        gt = torch.where(valid, gt, torch.ones_like(gt))  # no NaN/inf/log(0) anywhere, even in masked terms
        mask = valid.to(pred.dtype)
        losses = {}
        if self.loss_l1 is not None:
            losses["loss_depth_l1"] = self.loss_l1(pred, gt, weight=mask, avg_factor=mask.sum().clamp(min=1))
        if self.loss_silog is not None:
            losses["loss_depth_silog"] = self.loss_silog(pred, gt, weight=mask)
        return losses

    def runtime_manifest(self) -> dict:
        return dict(kind="depth", min_depth=self.min_depth, max_depth=self.max_depth)

    def predict_by_feat(self, outputs, data_samples: list) -> None:
        """``pred_depth_map`` (1, H0, W0) in metres at the original size, clamped to the head's range
        (:func:`~multitask_vision.models.heads.decoding.decode_depth`, as the runtime helper does)."""
        metas = [s.metainfo for s in data_samples]
        for sample, depth in zip(data_samples, decode_depth(outputs, metas, **self.runtime_manifest())):
            sample.pred_depth_map = PixelData(data=depth)
