"""Decoding the native heads' raw outputs into per-image predictions in original image coordinates.

One copy, shared by the heads' own ``predict_by_feat`` (PyTorch tensors) and by the runtime helper of an
exported model (:mod:`multitask_vision.compression.postprocess`, numpy arrays from ONNX Runtime converted with
``torch.from_numpy``): what a head declares in ``runtime_manifest()`` is exactly what its ``predict`` does.
Needs torch and torchvision only.

Layout of the dense outputs (the data preprocessor's): every image of a batch sits at the top-left of a
``batch_input_shape`` canvas, its unpadded part is ``img_shape`` and it was resized from ``ori_shape`` by
``scale_factor`` (w, h).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms


def meta_value(meta: dict[str, Any], key: str) -> Any:
    """``meta[key]`` from a data sample's metainfo, with an error naming the missing key."""
    if key not in meta:
        raise KeyError(f"data sample metainfo lacks {key!r} (has {sorted(meta)}); the data pipeline sets it")
    return meta[key]


def meta_shape(meta: dict[str, Any], key: str) -> tuple[int, int]:
    """``(H, W)`` of a shape entry (``img_shape``, ``ori_shape``, ``batch_input_shape`` ...) of the metainfo."""
    h, w = meta_value(meta, key)[:2]
    return int(h), int(w)


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of (B, C, h, w) to ``size`` (h, w) (no-op when already there)."""
    h, w = (int(v) for v in size)
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def to_original(dense: Tensor, meta: dict[str, Any]) -> Tensor:
    """One image's dense map (C, h, w) at the head's stride -> (C, H0, W0) in original image coordinates.

    Resize to the padded batch input, crop the padding away (``img_shape``), resize to ``ori_shape``.
    """
    x = resize(dense[None], meta_shape(meta, "batch_input_shape"))  # (1, C, Hb, Wb)
    h, w = meta_shape(meta, "img_shape")
    x = x[..., :h, :w]  # (1, C, h, w)
    return resize(x, meta_shape(meta, "ori_shape"))[0]  # (C, H0, W0)


def grid_points(h: int, w: int, stride: int, device: torch.device | None = None) -> Tensor:
    """Centres (h * w, 2) xy in input pixels of a level's locations, row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


def distance_to_boxes(points: Tensor, ltrb: Tensor) -> Tensor:
    """(..., 2) points and (..., 4) left/top/right/bottom distances -> (..., 4) xyxy boxes."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]], -1)


def decode_fcos(
    cls_scores: Sequence[Tensor],
    bbox_preds: Sequence[Tensor],
    centernesses: Sequence[Tensor],
    metas: Sequence[dict[str, Any]],
    *,
    strides: Sequence[int],
    score_thr: float,
    nms_iou: float,
    max_per_img: int,
    nms_pre: int,
    **_: Any,
) -> list[dict[str, Tensor]]:
    """FCOS outputs (per level: (B, K, h, w) class logits, (B, 4, h, w) ltrb distances in input pixels, (B, 1,
    h, w) centerness logits) -> per image ``{'bboxes': (N, 4) xyxy original pixels, 'scores': (N,), 'labels':
    (N,)}``: score ``sqrt(sigmoid(cls) * sigmoid(ctr))``, top ``nms_pre`` per level, boxes clipped to the
    unpadded image, class-aware NMS, ``max_per_img``, divided by ``scale_factor`` and clipped to ``ori_shape``.
    Extra keyword arguments (the rest of a runtime manifest entry) are ignored."""
    b, k = cls_scores[0].shape[:2]
    device = cls_scores[0].device
    all_boxes, all_scores, all_labels = [], [], []
    for cls, reg, ctr, stride in zip(cls_scores, bbox_preds, centernesses, strides):
        pts = grid_points(cls.shape[-2], cls.shape[-1], stride, device)  # (hw, 2)
        prob = cls.float().sigmoid().permute(0, 2, 3, 1).reshape(b, -1, k)  # (B, hw, K)
        ctr_prob = ctr.float().sigmoid().permute(0, 2, 3, 1).reshape(b, -1, 1)  # (B, hw, 1)
        scores = (prob * ctr_prob).sqrt().reshape(b, -1)  # (B, hw * K)
        top, idx = scores.topk(min(nms_pre, scores.shape[1]), dim=1)  # (B, n)
        loc = torch.div(idx, k, rounding_mode="floor")
        dist = reg.float().permute(0, 2, 3, 1).reshape(b, -1, 4).gather(1, loc[..., None].expand(-1, -1, 4))
        all_boxes.append(distance_to_boxes(pts[loc], dist))  # (B, n, 4)
        all_scores.append(top)
        all_labels.append(idx % k)
    boxes, scores, labels = torch.cat(all_boxes, 1), torch.cat(all_scores, 1), torch.cat(all_labels, 1)

    # Clip to each image's unpadded extent (input pixels) before NMS.
    img_hw = torch.tensor([meta_shape(m, "img_shape") for m in metas], device=device)
    max_xy = img_hw.flip(-1).repeat(1, 2).float()[:, None, :]  # (B, 1, 4): w, h, w, h
    boxes = torch.minimum(boxes.clamp(min=0), max_xy)

    keep = scores > score_thr  # (B, N)
    img_idx = torch.arange(b, device=device)[:, None].expand_as(keep)[keep]  # (M,)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    order = batched_nms(boxes, scores, img_idx * k + labels, nms_iou)  # score-descending
    results = []
    for i, meta in enumerate(metas):
        sel = order[img_idx[order] == i][:max_per_img]
        sx, sy = (float(v) for v in meta_value(meta, "scale_factor")[:2])
        h0, w0 = meta_shape(meta, "ori_shape")
        det = boxes[sel] / boxes.new_tensor([sx, sy, sx, sy])  # (N, 4) original image pixels
        det[:, 0::2] = det[:, 0::2].clamp(0, w0)
        det[:, 1::2] = det[:, 1::2].clamp(0, h0)
        results.append(dict(bboxes=det, scores=scores[sel], labels=labels[sel]))
    return results


def decode_seg(logits: Tensor, metas: Sequence[dict[str, Any]]) -> list[Tensor]:
    """(B, K, h, w) logits -> per image (K, H0, W0) float logits at the original size (argmax: the labels)."""
    return [to_original(x, m) for x, m in zip(logits.float(), metas)]


def decode_depth(
    depth: Tensor, metas: Sequence[dict[str, Any]], *, min_depth: float, max_depth: float, **_: Any
) -> list[Tensor]:
    """(B, 1, h, w) depth in metres -> per image (1, H0, W0), clamped to the head's range."""
    return [to_original(x, m).clamp(min_depth, max_depth) for x, m in zip(depth.float(), metas)]
