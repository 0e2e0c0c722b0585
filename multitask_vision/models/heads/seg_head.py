"""Semantic segmentation head: per-pixel class logits, cross-entropy with an ignore label."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from torch import Tensor

from multitask_vision.models.heads.decoding import decode_seg
from multitask_vision.models.heads.dense_head import DenseHead
from multitask_vision.models.heads.utils import resize, stack_pixel_gt
from multitask_vision.registry import MODELS


@MODELS.register_module()
class SegHead(DenseHead):
    """``forward(x) -> logits (B, num_classes, H / s, W / s)``; reads ``gt_sem_seg``, writes ``pred_sem_seg``.

    Args:
        num_classes: number of classes (logit channels).
        in_channels, channels, num_convs: see :class:`DenseHead`.
        ignore_index: label of pixels that count neither in the loss nor in the accuracy (the padding value).
        loss_weight: factor on the cross-entropy.
        class_weight: optional per-class weights of the cross-entropy (weighted mean, as ``F.cross_entropy``).
    """

    output_names = "logits"

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int | list[int],
        channels: int = 64,
        num_convs: int = 1,
        ignore_index: int = 255,
        loss_weight: float = 1.0,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=num_classes, channels=channels, num_convs=num_convs
        )
        if class_weight is not None and len(class_weight) != num_classes:
            raise ValueError(
                f"SegHead: class_weight has {len(class_weight)} entries for {num_classes} classes"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight
        self.class_weight: Tensor | None
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def loss(self, x, data_samples: list) -> dict[str, Tensor]:
        gt = stack_pixel_gt(data_samples, "gt_sem_seg")[:, 0].long()  # (B, H, W) at the batch input size
        logits = resize(self(x).float(), gt.shape[-2:])  # (B, K, H, W)
        valid = gt != self.ignore_index  # (B, H, W)
        ce = F.cross_entropy(
            logits, gt, weight=self.class_weight, ignore_index=self.ignore_index, reduction="none"
        )  # (B, H, W), 0 where ignored
        if self.class_weight is None:
            denom = valid.sum().to(ce.dtype)
        else:
            denom = (self.class_weight[gt.masked_fill(~valid, 0)] * valid).sum()
        # A batch with every pixel ignored gives 0 (still part of the graph), not 0 / 0.
        loss = ce.sum() / denom.clamp(min=1e-12)
        with torch.no_grad():
            correct = ((logits.argmax(1) == gt) & valid).sum()
            acc = correct.float() * 100.0 / valid.sum().clamp(min=1)
        return dict(loss_seg=self.loss_weight * loss, acc_seg=acc)

    def runtime_manifest(self) -> dict:
        return dict(kind="seg", num_classes=self.num_classes)

    def predict_by_feat(self, outputs, data_samples: list) -> None:
        """``seg_logits`` (K, H0, W0) and ``pred_sem_seg`` (1, H0, W0) at the original size
        (:func:`~multitask_vision.models.heads.decoding.decode_seg`, as the runtime helper does)."""
        for sample, seg in zip(data_samples, decode_seg(outputs, [s.metainfo for s in data_samples])):
            sample.seg_logits = PixelData(data=seg)
            sample.pred_sem_seg = PixelData(data=seg.argmax(0, keepdim=True))  # (1, H0, W0) long
