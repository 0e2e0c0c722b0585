"""Semantic segmentation head: per-pixel class logits, trained by mmseg's losses with an ignore label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from mmengine.structures import PixelData
from torch import Tensor, nn

from multitask_vision.models.heads.decoding import decode_seg
from multitask_vision.models.heads.dense_head import DenseHead
from multitask_vision.models.heads.utils import resize, stack_pixel_gt
from multitask_vision.models.losses import build_loss
from multitask_vision.registry import MODELS

# cross-entropy averaged over the non-ignored pixels, logged as 'loss_seg'
DEFAULT_LOSS_DECODE = MappingProxyType(
    dict(
        type="mmseg.CrossEntropyLoss",
        use_sigmoid=False,
        loss_weight=1.0,
        avg_non_ignore=True,
        loss_name="loss_seg",
    )
)


@MODELS.register_module()
class SegHead(DenseHead):
    """``forward(x) -> logits (B, num_classes, H / s, W / s)``; reads ``gt_sem_seg``, writes ``pred_sem_seg``.

    Args:
        num_classes: number of classes (logit channels).
        in_channels, channels, num_convs: see :class:`DenseHead`.
        ignore_index: label of pixels that count neither in the loss nor in the accuracy (the padding value).
        loss_decode: a loss config or a list of them, as mmseg's decode heads take it: each is called as
            ``loss(logits (B, K, H, W), labels (B, H, W), ignore_index=ignore_index)`` at the batch input size
            and logged under its ``loss_name`` (terms of the same name are summed). Default: cross-entropy
            averaged over the non-ignored pixels, ``loss_seg``. For ``class_weight`` use
            ``type='SegCrossEntropyLoss'`` (mmseg's, fixed for ignored pixels; see
            :mod:`multitask_vision.models.losses`).
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
        loss_decode: Mapping[str, Any] | Sequence[Mapping[str, Any]] = DEFAULT_LOSS_DECODE,
    ) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=num_classes, channels=channels, num_convs=num_convs
        )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        cfgs = [loss_decode] if isinstance(loss_decode, Mapping) else list(loss_decode)
        if not cfgs:
            raise ValueError("SegHead: loss_decode is empty")
        self.loss_decode = nn.ModuleList(
            build_loss(cfg, f"SegHead: loss_decode[{i}]") for i, cfg in enumerate(cfgs)
        )
        for i, loss in enumerate(self.loss_decode):
            _check_seg_loss(loss, num_classes, f"SegHead: loss_decode[{i}]")

    def loss(self, x, data_samples: list) -> dict[str, Tensor]:
        gt = stack_pixel_gt(data_samples, "gt_sem_seg")[:, 0].long()  # (B, H, W) at the batch input size
        logits = resize(self(x).float(), gt.shape[-2:])  # (B, K, H, W)
        losses: dict[str, Tensor] = {}
        for loss in self.loss_decode:
            name, value = str(loss.loss_name), loss(logits, gt, ignore_index=self.ignore_index)
            losses[name] = losses[name] + value if name in losses else value
        with torch.no_grad():
            valid = gt != self.ignore_index  # (B, H, W)
            # max(1).indices, not argmax(1): the same labels, and on CPU argmax over the channel dim of a
            # (B, K, H, W) tensor took 16 ms of the quickstart's ~190 ms training step against 2 ms
            correct = ((logits.max(1).indices == gt) & valid).sum()
            losses["acc_seg"] = correct.float() * 100.0 / valid.sum().clamp(min=1)
        return losses

    def runtime_manifest(self) -> dict:
        return dict(kind="seg", num_classes=self.num_classes)

    def predict_by_feat(self, outputs, data_samples: list) -> None:
        """``seg_logits`` (K, H0, W0) and ``pred_sem_seg`` (1, H0, W0) at the original size
        (:func:`~multitask_vision.models.heads.decoding.decode_seg`, as the runtime helper does)."""
        for sample, seg in zip(data_samples, decode_seg(outputs, [s.metainfo for s in data_samples])):
            sample.seg_logits = PixelData(data=seg)
            sample.pred_sem_seg = PixelData(data=seg.argmax(0, keepdim=True))  # (1, H0, W0) long


def _check_seg_loss(loss: nn.Module, num_classes: int, where: str) -> None:
    """A segmentation loss needs a ``loss_name`` and, if it has class weights, one per class; mmseg's own
    cross-entropy cannot weight classes on batches with ignored pixels."""
    if not isinstance(getattr(loss, "loss_name", None), str):
        raise ValueError(f"{where}: {type(loss).__name__} has no loss_name; use an mmseg loss or one of ours")
    weights = getattr(loss, "class_weight", None)
    if weights is None:
        return
    if len(weights) != num_classes:
        raise ValueError(f"{where}: class_weight has {len(weights)} entries for {num_classes} classes")
    cls = type(loss)
    if cls.__module__.startswith("mmseg.") and cls.__name__ == "CrossEntropyLoss" and not loss.use_sigmoid:
        raise ValueError(
            f"{where}: mmseg.CrossEntropyLoss with class_weight fails on ignored pixels (mmseg 1.2.2 indexes "
            "the class weights with the ignore label): use type='SegCrossEntropyLoss', same arguments"
        )
