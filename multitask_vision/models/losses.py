"""Losses of the native heads: built from config dicts, like mmdet's and mmseg's heads build theirs.

A native head takes its losses as configs (``loss_cls=dict(type='mmdet.FocalLoss', gamma=2.0, ...)``) and builds
them with :func:`build_loss`, which resolves the ``type`` as a block's is resolved (``'mmdet.X'``, ``'mmseg.X'``,
or a bare name: ours first, then the one OpenMMLab package that has it) and builds it in that package's default
scope. Two losses are ours, where the OpenMMLab ones differ from what the native heads need:

* :class:`SILogLoss`: mmseg's ``SiLogLoss`` fixes the variance weight at 0.5, counts every target above 1e-4 as
  valid and averages over images without a valid pixel too;
* :class:`SegCrossEntropyLoss`: mmseg's ``CrossEntropyLoss`` with ``class_weight`` indexes the class weights
  with the ignore label while averaging (mmseg 1.2.2: ``IndexError: index 255 is out of bounds``, open-mmlab/
  mmsegmentation#3734), so it fails on any batch with ignored or padded pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from multitask_vision.models.block_types import UnknownTypeError, resolve_block_type, scope_context
from multitask_vision.registry import MODELS


def build_loss(cfg: Any, where: str) -> nn.Module:
    """Build the loss ``cfg`` (a dict with ``type``) in the default scope of the package that owns the type.

    ``where`` names the config key in errors, e.g. ``'AnchorFreeDetHead: loss_cls'``."""
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("type"), str):
        raise ValueError(f"{where} must be a loss config dict with a 'type', got {cfg!r}")
    kwargs = dict(cfg)
    try:
        scope, cls = resolve_block_type(kwargs.pop("type"), kind="loss")
    except UnknownTypeError as e:
        raise ValueError(f"{where}: {e}") from None
    with scope_context(scope):
        try:
            return cls(**kwargs)
        except (TypeError, AssertionError, ValueError) as e:
            raise ValueError(f"{where} ({cls.__name__}) could not be built: {e}") from e


@MODELS.register_module()
class SILogLoss(nn.Module):
    """Scale-invariant log loss (Eigen et al. 2014) on the valid pixels of each image, averaged over the images
    that have one: ``sqrt(mean(d^2) - variance_focus * mean(d)^2)``, ``d = log(pred) - log(target)``.

    ``forward(pred, target, weight)``: (B, C, H, W) each; ``weight`` is 1 on valid pixels and 0 elsewhere,
    where ``target`` may hold anything (it is read as 1 there).

    Args:
        variance_focus: the weight of the squared mean, in [0, 1] (1 = fully scale invariant).
        loss_weight: factor on the loss.
        eps: floor under the square root, which keeps its gradient finite when ``d == 0`` (perfect or empty
            images).
    """

    def __init__(self, variance_focus: float = 0.85, loss_weight: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0 <= variance_focus <= 1:
            raise ValueError(f"SILogLoss: variance_focus must be in [0, 1], got {variance_focus}")
        self.variance_focus = variance_focus
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        target = torch.where(weight > 0, target, torch.ones_like(target))  # no log(0) / NaN in masked terms
        d = (pred.log() - target.log()) * weight  # (B, C, H, W)
        dims = tuple(range(1, d.dim()))
        n = weight.sum(dims)  # (B,)
        mean_d = d.sum(dims) / n.clamp(min=1)
        mean_d2 = d.pow(2).sum(dims) / n.clamp(min=1)
        silog = (mean_d2 - self.variance_focus * mean_d.pow(2)).clamp(min=self.eps).sqrt()  # (B,)
        has_valid = (n > 0).to(silog.dtype)
        return self.loss_weight * (silog * has_valid).sum() / has_valid.sum().clamp(min=1)


@MODELS.register_module()
class SegCrossEntropyLoss(nn.Module):
    """mmseg's ``CrossEntropyLoss`` (same arguments, same values, its ``loss_name``) whose ``class_weight`` works
    on batches with ignored pixels: the weighted mean divides by the class weights of the non-ignored pixels, as
    ``F.cross_entropy(weight=...)`` does. ``class_weight`` needs ``avg_non_ignore=True``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        from mmseg.models.losses import CrossEntropyLoss  # mmseg.models is heavy: imported when used

        self.ce = CrossEntropyLoss(**kwargs)
        if self.ce.class_weight is not None and not self.ce.avg_non_ignore:
            raise ValueError("SegCrossEntropyLoss: class_weight needs avg_non_ignore=True")

    @property
    def loss_name(self) -> str:
        return self.ce.loss_name

    @property
    def class_weight(self) -> list[float] | None:
        return self.ce.class_weight

    def forward(
        self,
        cls_score: Tensor,
        label: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | Tensor | None = None,
        reduction_override: str | None = None,
        ignore_index: int = -100,
        **kwargs: Any,
    ) -> Tensor:
        ce = self.ce
        reduction = reduction_override or ce.reduction
        softmax = not (ce.use_sigmoid or ce.use_mask)
        if avg_factor is None and reduction == "mean" and ce.class_weight is not None and softmax:
            valid = label != ignore_index
            class_weight = cls_score.new_tensor(ce.class_weight)
            avg_factor = (class_weight[label.masked_fill(~valid, 0)] * valid).sum()
        return ce(
            cls_score, label, weight, avg_factor, reduction_override, ignore_index=ignore_index, **kwargs
        )
