"""FCOS-style anchor-free detection head with batched target assignment (no per-image Python loop)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import Conv2dNormActivation

from multitask_vision.models.blocks import TaskHead
from multitask_vision.models.heads.decoding import decode_fcos, distance_to_boxes, grid_points
from multitask_vision.models.heads.utils import (
    reduce_mean,
    spec_list,
    to_feature_list,
)
from multitask_vision.models.losses import build_loss
from multitask_vision.models.spec import FeatureSpec, Spec, describe
from multitask_vision.registry import MODELS

INF = 1e8
# FCOS's losses (mmdet's configs/fcos); the head normalises them as mmdet's FCOSHead does
DEFAULT_LOSS_CLS = MappingProxyType(
    dict(type="mmdet.FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
)
DEFAULT_LOSS_BBOX = MappingProxyType(dict(type="mmdet.GIoULoss", loss_weight=1.0))
DEFAULT_LOSS_CENTERNESS = MappingProxyType(
    dict(type="mmdet.CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
)


def default_regress_ranges(strides: Sequence[int]) -> tuple[tuple[float, float], ...]:
    """FCOS ranges of the max box side distance: level ``i`` up to ``8 * strides[i]``, the last level unbounded.

    For strides 8..128 this is FCOS's ``((-1, 64), (64, 128), (128, 256), (256, 512), (512, inf))``.
    """
    bounds = [-1.0] + [8.0 * s for s in strides[:-1]] + [INF]
    return tuple((bounds[i], bounds[i + 1]) for i in range(len(strides)))


def _checked_regress_ranges(
    strides: tuple[int, ...], regress_ranges: Sequence[Sequence[float]] | None
) -> tuple[tuple[float, float], ...]:
    """``regress_ranges`` (default :func:`default_regress_ranges`) as floats, one ``(lo, hi)`` per stride."""
    ranges = default_regress_ranges(strides) if regress_ranges is None else regress_ranges
    if len(ranges) != len(strides):
        raise ValueError(
            f"AnchorFreeDetHead: regress_ranges has {len(ranges)} entries but strides {strides} "
            f"has {len(strides)}: give one (lo, hi) per level"
        )
    if any(len(r) != 2 or not r[0] < r[1] for r in ranges):
        raise ValueError(
            f"AnchorFreeDetHead: every regress range must be (lo, hi) with lo < hi, got {ranges}"
        )
    return tuple((float(lo), float(hi)) for lo, hi in ranges)


def _group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest number of groups <= ``max_groups`` that divides ``channels``."""
    return nn.GroupNorm(max(g for g in range(1, max_groups + 1) if channels % g == 0), channels)


def centerness_target(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of (N, 4) distances -> (N,)."""
    lr, tb = ltrb[:, 0::2], ltrb[:, 1::2]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


@MODELS.register_module()
class AnchorFreeDetHead(TaskHead):
    """FCOS head shared over pyramid levels (Tian et al. 2019, with the v2 tweaks: GN, centerness on the
    regression tower, center sampling, GIoU, distances scaled by the stride).

    ``forward(levels) -> (cls_scores, bbox_preds, centernesses)``, each a tuple over levels of
    (B, num_classes, h, w) logits, (B, 4, h, w) left/top/right/bottom distances in input pixels, and
    (B, 1, h, w) centerness logits. Classes are sigmoid scores with no background channel.

    ``loss`` reads ``gt_instances.bboxes`` (N, 4) xyxy in input pixels (a tensor or an mmdet box type) and
    ``.labels`` (N,); ``ignored_instances`` are not used. ``predict`` writes ``pred_instances`` (bboxes in
    original image pixels: divided by metainfo ``scale_factor`` (w, h) and clipped to ``ori_shape``).

    Args:
        num_classes: foreground classes (labels ``0 .. num_classes - 1``).
        in_channels: channels of every input level (the towers are shared).
        feat_channels: width of the towers.
        stacked_convs: 3x3 conv-norm-ReLU layers of each tower (>= 1).
        strides: stride of each input level, checked against the input spec.
        regress_ranges: per level ``(lo, hi)`` range of the largest target distance; default
            :func:`default_regress_ranges`.
        center_sampling, center_sample_radius: positives only within ``radius * stride`` of a box centre.
        norm: ``'GN'`` (groups: the largest divisor of ``feat_channels`` up to 32), ``'BN'`` or ``None``.
        loss_cls: config of the classification loss, called as mmdet's ``FCOSHead`` calls it but with one-hot
            targets: ``(logits (N, K), one-hot (N, K), avg_factor=positives)`` (default sigmoid focal loss; the
            one-hot form keeps mmdet's ``FocalLoss`` on its PyTorch implementation on every device).
        loss_bbox: config of the box loss on the positives, ``(boxes (M, 4), target boxes (M, 4),
            weight=centerness targets (M,), avg_factor=their sum)`` (default GIoU).
        loss_centerness: config of the centerness loss, ``(logits (M,), targets (M,), avg_factor=positives)``
            (default binary cross-entropy).
        prior_prob: initial foreground probability (classification bias).
        score_thr, nms_iou, max_per_img, nms_pre: inference: score threshold on ``sqrt(cls * centerness)``,
            class-aware NMS IoU, detections kept per image, candidates kept per level before NMS.
    """

    output_names = ("cls", "bbox", "ctr")  # per level: cls_0.., bbox_0.., ctr_0..

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 64,
        stacked_convs: int = 2,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        regress_ranges: Sequence[Sequence[float]] | None = None,
        center_sampling: bool = True,
        center_sample_radius: float = 1.5,
        norm: str | None = "GN",
        loss_cls: Mapping[str, Any] = DEFAULT_LOSS_CLS,
        loss_bbox: Mapping[str, Any] = DEFAULT_LOSS_BBOX,
        loss_centerness: Mapping[str, Any] = DEFAULT_LOSS_CENTERNESS,
        prior_prob: float = 0.01,
        score_thr: float = 0.05,
        nms_iou: float = 0.6,
        max_per_img: int = 100,
        nms_pre: int = 1000,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int):
            raise ValueError(
                f"AnchorFreeDetHead: in_channels must be one int (shared towers), got {in_channels!r}"
            )
        if not strides:
            raise ValueError("AnchorFreeDetHead: strides is empty")
        if stacked_convs < 1:
            raise ValueError(f"AnchorFreeDetHead: stacked_convs must be >= 1, got {stacked_convs}")
        if norm not in ("GN", "BN", None):
            raise ValueError(f"AnchorFreeDetHead: norm must be 'GN', 'BN' or None, got {norm!r}")
        self.strides = tuple(int(s) for s in strides)
        self.regress_ranges = _checked_regress_ranges(self.strides, regress_ranges)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.max_per_img = max_per_img
        self.nms_pre = nms_pre

        norm_layer = {"GN": _group_norm, "BN": nn.BatchNorm2d, None: None}[norm]

        def tower() -> nn.Sequential:
            blocks = [
                Conv2dNormActivation(
                    in_channels if i == 0 else feat_channels,
                    feat_channels,
                    3,
                    norm_layer=norm_layer,
                    bias=True,
                )
                for i in range(stacked_convs)
            ]
            # one flat Sequential (conv, norm, ReLU, conv, ...): checkpoints keep their keys cls_convs.<i>.*
            return nn.Sequential(*(layer for block in blocks for layer in block))

        self.cls_convs, self.reg_convs = tower(), tower()
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))  # learnable per-level regression scale
        self.loss_cls = build_loss(loss_cls, "AnchorFreeDetHead: loss_cls")
        self.loss_bbox = build_loss(loss_bbox, "AnchorFreeDetHead: loss_bbox")
        self.loss_centerness = build_loss(loss_centerness, "AnchorFreeDetHead: loss_centerness")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0)
        cls_bias = self.conv_cls.bias
        assert cls_bias is not None
        nn.init.constant_(cls_bias, -math.log((1 - prior_prob) / prior_prob))

    # ----------------------------------------------------------------------------------------------- forward
    def output_spec(self, input_spec: Spec) -> tuple[tuple[FeatureSpec, ...], ...]:
        specs = spec_list(input_spec, "AnchorFreeDetHead")
        if len(specs) != len(self.strides):
            raise ValueError(
                f"AnchorFreeDetHead: strides {self.strides} give {len(self.strides)} levels but it receives "
                f"{len(specs)}: {describe(tuple(specs))}"
            )
        for i, (spec, stride) in enumerate(zip(specs, self.strides)):
            if spec.stride != stride:
                raise ValueError(
                    f"AnchorFreeDetHead: level {i} has stride {spec.stride} but strides[{i}] = {stride} "
                    f"(input {describe(tuple(specs))}, strides {self.strides})"
                )
        return tuple(tuple(FeatureSpec(c, s) for s in self.strides) for c in (self.num_classes, 4, 1))

    def forward(self, x) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...]]:
        feats = to_feature_list(x)  # [(B, C, h_i, w_i)]
        if len(feats) != len(self.strides):
            raise ValueError(f"AnchorFreeDetHead: built for {len(self.strides)} levels, got {len(feats)}")
        cls_scores, bbox_preds, centernesses = [], [], []
        for i, feat in enumerate(feats):
            cls_feat, reg_feat = self.cls_convs(feat), self.reg_convs(feat)  # (B, F, h, w)
            cls_scores.append(self.conv_cls(cls_feat))  # (B, K, h, w)
            bbox_preds.append(
                F.relu(self.scales[i] * self.conv_reg(reg_feat)) * self.strides[i]
            )  # (B, 4, h, w)
            centernesses.append(self.conv_centerness(reg_feat))  # (B, 1, h, w)
        return tuple(cls_scores), tuple(bbox_preds), tuple(centernesses)

    # ------------------------------------------------------------------------------------------- targets
    def points(self, featmap_sizes: Sequence[tuple[int, int]], device: torch.device) -> tuple[Tensor, ...]:
        """Centres of every location, level by level in row-major order.

        Returns ``points`` (P, 2) xy in input pixels, ``strides`` (P,) and ``ranges`` (P, 2).
        """
        points, strides, ranges = [], [], []
        for (h, w), stride, rng in zip(featmap_sizes, self.strides, self.regress_ranges):
            points.append(grid_points(h, w, stride, device))  # (h * w, 2)
            strides.append(torch.full((h * w,), float(stride), device=device))
            ranges.append(torch.tensor(rng, device=device).expand(h * w, 2))
        return torch.cat(points), torch.cat(strides), torch.cat(ranges)

    def pack_gt(self, data_samples: list, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Ground truth padded over the batch: boxes (B, G, 4), labels (B, G), valid (B, G)."""
        boxes, labels = [], []
        for sample in data_samples:
            b = sample.gt_instances.bboxes
            b = b.tensor if hasattr(b, "tensor") else torch.as_tensor(b)  # mmdet box types carry .tensor
            boxes.append(b.to(device=device, dtype=torch.float32).reshape(-1, 4))
            labels.append(torch.as_tensor(sample.gt_instances.labels, device=device).long().reshape(-1))
        counts = torch.tensor([len(b) for b in boxes], device=device)
        boxes_t = pad_sequence(boxes, batch_first=True)  # (B, G, 4)
        labels_t = pad_sequence(labels, batch_first=True, padding_value=self.num_classes)  # (B, G)
        valid = torch.arange(boxes_t.shape[1], device=device)[None] < counts[:, None]  # (B, G)
        return boxes_t, labels_t, valid

    @torch.no_grad()
    def get_targets(
        self, points: Tensor, strides: Tensor, ranges: Tensor, boxes: Tensor, labels: Tensor, valid: Tensor
    ) -> tuple[Tensor, Tensor]:
        """FCOS assignment for the whole batch: labels (B, P) (``num_classes`` = background) and ltrb (B, P, 4).

        A point is a candidate for a box when it lies inside it (or inside its centre region with
        ``center_sampling``) and its largest distance to the box sides is within the level's range; among
        candidates the smallest box wins.
        """
        b, g = labels.shape
        p = points.shape[0]
        if g == 0:
            return labels.new_full((b, p), self.num_classes), points.new_zeros(b, p, 4)
        px, py = points[None, :, 0, None], points[None, :, 1, None]  # (1, P, 1)
        x1, y1, x2, y2 = (boxes[..., k][:, None, :] for k in range(4))  # (B, 1, G)
        ltrb = torch.stack([px - x1, py - y1, x2 - px, y2 - py], -1)  # (B, P, G, 4)
        if self.center_sampling:
            radius = strides[None, :, None] * self.center_sample_radius  # (1, P, 1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            cx1, cy1 = torch.maximum(cx - radius, x1), torch.maximum(cy - radius, y1)  # (B, P, G)
            cx2, cy2 = torch.minimum(cx + radius, x2), torch.minimum(cy + radius, y2)
            inside = torch.stack([px - cx1, py - cy1, cx2 - px, cy2 - py], -1).min(-1).values > 0
        else:
            inside = ltrb.min(-1).values > 0  # (B, P, G)
        max_dist = ltrb.max(-1).values  # (B, P, G)
        in_range = (max_dist >= ranges[None, :, 0, None]) & (max_dist <= ranges[None, :, 1, None])
        areas = ((x2 - x1) * (y2 - y1)).expand(b, p, g)  # (B, P, G)
        areas = torch.where(inside & in_range & valid[:, None, :], areas, torch.full_like(areas, INF))
        min_area, idx = areas.min(-1)  # (B, P)
        target_labels = labels.gather(1, idx)  # (B, P)
        target_labels = torch.where(
            min_area < INF, target_labels, torch.full_like(target_labels, self.num_classes)
        )
        target_ltrb = ltrb.gather(2, idx[..., None, None].expand(b, p, 1, 4)).squeeze(2)  # (B, P, 4)
        return target_labels, target_ltrb

    # ---------------------------------------------------------------------------------------------- loss
    def loss(self, x, data_samples: list) -> dict[str, Tensor]:
        cls_scores, bbox_preds, centernesses = self(x)
        b, k = cls_scores[0].shape[:2]
        device = cls_scores[0].device
        points, strides, ranges = self.points([c.shape[-2:] for c in cls_scores], device)
        labels, ltrb_t = self.get_targets(points, strides, ranges, *self.pack_gt(data_samples, device))

        def flat(maps: tuple[Tensor, ...], c: int) -> Tensor:  # levels of (B, c, h, w) -> (B, P, c), fp32
            return torch.cat([m.permute(0, 2, 3, 1).reshape(b, -1, c) for m in maps], 1).float()

        cls, ltrb, ctr = flat(cls_scores, k), flat(bbox_preds, 4), flat(centernesses, 1)[..., 0]
        pos = labels < self.num_classes  # (B, P)
        num_pos = reduce_mean(pos.sum().float()).clamp(min=1.0)
        onehot = F.one_hot(labels, self.num_classes + 1)[..., : self.num_classes].to(cls.dtype)  # (B, P, K)
        loss_cls = self.loss_cls(cls.reshape(-1, k), onehot.reshape(-1, k), avg_factor=num_pos)

        pos_points = points[None].expand(b, -1, -1)[pos]  # (N, 2)
        pos_ltrb_t = ltrb_t[pos]  # (N, 4)
        ctr_t = centerness_target(pos_ltrb_t)  # (N,)
        # Always reduced (even with no positive here) so every process takes part in the collective.
        ctr_denom = reduce_mean(ctr_t.sum()).clamp(min=1e-6)
        loss_bbox = self.loss_bbox(
            distance_to_boxes(pos_points, ltrb[pos]),
            distance_to_boxes(pos_points, pos_ltrb_t),
            weight=ctr_t,
            avg_factor=ctr_denom,
        )
        loss_centerness = self.loss_centerness(ctr[pos], ctr_t, avg_factor=num_pos)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_centerness=loss_centerness)

    # ------------------------------------------------------------------------------------------- predict
    def runtime_manifest(self) -> dict:
        return dict(
            kind="fcos",
            strides=list(self.strides),
            num_classes=self.num_classes,
            score_thr=self.score_thr,
            nms_iou=self.nms_iou,
            max_per_img=self.max_per_img,
            nms_pre=self.nms_pre,
        )

    def predict_by_feat(self, outputs, data_samples: list) -> None:
        """``pred_instances`` by :func:`~multitask_vision.models.heads.decoding.decode_fcos` (bboxes in original
        image pixels), the decoder the runtime helper of an exported model uses too."""
        cls_scores, bbox_preds, centernesses = outputs
        metas = [s.metainfo for s in data_samples]
        dets = decode_fcos(cls_scores, bbox_preds, centernesses, metas, **self.runtime_manifest())
        for sample, det in zip(data_samples, dets):
            sample.pred_instances = InstanceData(**det)
