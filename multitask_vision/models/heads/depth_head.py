"""Monocular depth head: bounded positive depth in metres, L1 + scale-invariant log loss on valid pixels."""

from __future__ import annotations

import torch
from mmengine.structures import PixelData
from torch import Tensor

from multitask_vision.models.heads.decoding import decode_depth
from multitask_vision.models.heads.dense_head import DenseHead
from multitask_vision.models.heads.utils import resize, stack_pixel_gt
from multitask_vision.registry import MODELS


@MODELS.register_module()
class DepthHead(DenseHead):
    """``forward(x) -> depth (B, 1, H / s, W / s)`` in metres, ``min_depth + (max_depth - min_depth) * sigmoid``.

    Ground truth ``gt_depth_map`` is valid where ``min_depth <= depth <= max_depth`` (0, the padding value, and
    anything beyond ``max_depth`` are ignored). Losses, on valid pixels at the batch input size:

    * ``loss_depth_l1``: mean absolute error over the batch's valid pixels;
    * ``loss_depth_silog``: scale-invariant log error (Eigen et al. 2014)
      ``sqrt(mean(d^2) - silog_lambda * mean(d)^2)``, ``d = log(pred) - log(gt)``, per image, averaged over the
      images that have valid pixels.

    A term whose weight is 0 is not computed nor returned; at least one weight must be positive.

    Args:
        in_channels, channels, num_convs: see :class:`DenseHead`.
        max_depth, min_depth: output range and validity range of the ground truth, in metres.
        loss_l1_weight, loss_silog_weight: factors of the two terms.
        silog_lambda: variance weight of the SILog loss, in [0, 1] (1 = fully scale invariant).
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
        loss_l1_weight: float = 1.0,
        loss_silog_weight: float = 1.0,
        silog_lambda: float = 0.85,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=1, channels=channels, num_convs=num_convs)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"DepthHead: need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if loss_l1_weight < 0 or loss_silog_weight < 0 or loss_l1_weight == loss_silog_weight == 0:
            raise ValueError(
                "DepthHead: loss_l1_weight and loss_silog_weight must be >= 0 and not both 0, "
                f"got {loss_l1_weight} and {loss_silog_weight}"
            )
        if not 0 <= silog_lambda <= 1:
            raise ValueError(f"DepthHead: silog_lambda must be in [0, 1], got {silog_lambda}")
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.loss_l1_weight = loss_l1_weight
        self.loss_silog_weight = loss_silog_weight
        self.silog_lambda = silog_lambda

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
        if self.loss_l1_weight > 0:
            l1 = ((pred - gt).abs() * mask).sum() / mask.sum().clamp(min=1)
            losses["loss_depth_l1"] = self.loss_l1_weight * l1
        if self.loss_silog_weight > 0:
            d = (pred.log() - gt.log()) * mask  # (B, 1, H, W)
            n = mask.sum((1, 2, 3))  # (B,)
            mean_d = d.sum((1, 2, 3)) / n.clamp(min=1)
            mean_d2 = d.pow(2).sum((1, 2, 3)) / n.clamp(min=1)
            # clamp keeps sqrt's gradient finite when d == 0 (perfect or empty images)
            silog = (mean_d2 - self.silog_lambda * mean_d.pow(2)).clamp(min=1e-8).sqrt()  # (B,)
            has_valid = (n > 0).to(silog.dtype)
            silog = (silog * has_valid).sum() / has_valid.sum().clamp(min=1)
            losses["loss_depth_silog"] = self.loss_silog_weight * silog
        return losses

    def runtime_manifest(self) -> dict:
        return dict(kind="depth", min_depth=self.min_depth, max_depth=self.max_depth)

    def predict_by_feat(self, outputs, data_samples: list) -> None:
        """``pred_depth_map`` (1, H0, W0) in metres at the original size, clamped to the head's range
        (:func:`~multitask_vision.models.heads.decoding.decode_depth`, as the runtime helper does)."""
        metas = [s.metainfo for s in data_samples]
        for sample, depth in zip(data_samples, decode_depth(outputs, metas, **self.runtime_manifest())):
            sample.pred_depth_map = PixelData(data=depth)
