"""Runtime helper for an exported model: what the graph does not contain (pre-processing, box decoding + NMS,
resizing dense maps back to the image), for numpy arrays from ONNX Runtime.

NMS has data-dependent output sizes and per-image loops, so it is left out of the exported graph (as in mmdet's
and mmseg's own deployments); so are the image normalisation and the resizing to each image's original size.
This module needs numpy, torch and torchvision (for ``batched_nms`` and the same bilinear resize as the heads),
nothing else of the project; the manifest (``<name>.json`` beside the ONNX file) carries every constant::

    manifest = json.load(open("out/model_fp32.json"))
    img, metas = preprocess([cv2.imread("a.jpg")], manifest["preprocess"])     # (1, 3, H, W) float32
    outs = dict(zip(output_names, session.run(None, {"input": img})))
    results = decode(manifest, outs, metas)   # [{'det_head': {'bboxes','scores','labels'}, 'seg_head': (H0, W0)
                                              #   int64 labels, 'depth_head': (H0, W0) float32 metres}]

The detection decoding is the one of ``AnchorFreeDetHead.predict`` (score ``sqrt(sigmoid(cls) *
sigmoid(ctr))``, top ``nms_pre`` per level, boxes clipped to the unpadded image, class-aware NMS, ``max_per_img``,
rescaled by ``scale_factor`` and clipped to the original size); a test checks that both give the same boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

# head class (or base class) name -> decoder kind
HEAD_KINDS = {"AnchorFreeDetHead": "fcos", "SegHead": "seg", "DepthHead": "depth"}


def head_kind(module: Any) -> str | None:
    for cls in type(module).__mro__:
        if cls.__name__ in HEAD_KINDS:
            return HEAD_KINDS[cls.__name__]
    return None


def head_manifest(name: str, module: Any, task: str, output_names: Sequence[str]) -> dict[str, Any]:
    """What :func:`decode` needs of one head; ``kind=None`` for a head this helper cannot decode."""
    kind = head_kind(module)
    entry: dict[str, Any] = dict(name=name, task=task, type=type(module).__name__, kind=kind)
    entry["outputs"] = [n for n in output_names if n.startswith(f"{name}.")]
    if kind == "fcos":
        entry.update(
            strides=list(module.strides),
            num_classes=module.num_classes,
            score_thr=module.score_thr,
            nms_iou=module.nms_iou,
            max_per_img=module.max_per_img,
            nms_pre=module.nms_pre,
        )
    elif kind == "seg":
        entry.update(num_classes=module.num_classes)
    elif kind == "depth":
        entry.update(min_depth=module.min_depth, max_depth=module.max_depth)
    return entry


def build_manifest(model: Any, output_names: Sequence[str]) -> dict[str, Any]:
    """Pre-processing constants and per-head decoding parameters of an exported model."""
    pre = model.data_preprocessor
    heads = [
        head_manifest(h.name, model.blocks[h.name], str(h.task), output_names)
        for h in model.graph.heads
        if any(n.startswith(f"{h.name}.") for n in output_names)
    ]
    return dict(
        input="input",
        input_layout="(B, 3, H, W) float32, normalised: RGB, (x - mean) / std, padded bottom/right",
        outputs=list(output_names),
        preprocess=dict(
            mean=[float(v) for v in pre.mean.flatten()],
            std=[float(v) for v in pre.std.flatten()],
            bgr_to_rgb=bool(pre._channel_conversion),
            pad_size_divisor=int(pre.pad_size_divisor),
            pad_value=float(pre.pad_value),
        ),
        heads=heads,
    )


# ------------------------------------------------------------------------------------------ pre-processing
def preprocess(images: Sequence[np.ndarray], cfg: dict[str, Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """HxWx3 uint8 images (BGR as read by OpenCV when ``bgr_to_rgb``) -> (B, 3, Hp, Wp) float32 and metas
    (``img_shape``, ``ori_shape``, ``batch_input_shape``, ``scale_factor``) for :func:`decode`. No resizing."""
    mean = np.asarray(cfg["mean"], np.float32)[:, None, None]
    std = np.asarray(cfg["std"], np.float32)[:, None, None]
    div = int(cfg["pad_size_divisor"])
    hp = max(math.ceil(im.shape[0] / div) * div for im in images)
    wp = max(math.ceil(im.shape[1] / div) * div for im in images)
    # mmengine pads after normalising: the padding holds pad_value in normalised space
    batch = np.full((len(images), 3, hp, wp), cfg["pad_value"], np.float32)
    metas = []
    for i, im in enumerate(images):
        x = im[..., ::-1] if cfg["bgr_to_rgb"] else im
        x = (x.transpose(2, 0, 1).astype(np.float32) - mean) / std  # (3, H, W)
        h, w = im.shape[:2]
        batch[i, :, :h, :w] = x
        metas.append(
            dict(img_shape=(h, w), ori_shape=(h, w), batch_input_shape=(hp, wp), scale_factor=(1.0, 1.0))
        )
    return batch, metas


# ------------------------------------------------------------------------------------------ decoding
def _t(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def _shape(meta: dict[str, Any], key: str) -> tuple[int, int]:
    h, w = meta[key][:2]
    return int(h), int(w)


def to_original(dense: Tensor, meta: dict[str, Any]) -> Tensor:
    """(C, h, w) at the head's stride -> (C, H0, W0): resize to the padded input, crop, resize to the original."""

    def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
        return (
            x
            if tuple(x.shape[-2:]) == size
            else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        )

    x = resize(dense[None].float(), _shape(meta, "batch_input_shape"))
    h, w = _shape(meta, "img_shape")
    return resize(x[..., :h, :w], _shape(meta, "ori_shape"))[0]


def decode_fcos(
    cls_scores: Sequence[Any],
    bbox_preds: Sequence[Any],
    centernesses: Sequence[Any],
    metas: Sequence[dict[str, Any]],
    *,
    strides: Sequence[int],
    score_thr: float,
    nms_iou: float,
    max_per_img: int,
    nms_pre: int,
    **_: Any,
) -> list[dict[str, np.ndarray]]:
    """Per image ``{'bboxes': (N, 4) xyxy original pixels, 'scores': (N,), 'labels': (N,)}``."""
    cls = [_t(c).float() for c in cls_scores]
    reg = [_t(r).float() for r in bbox_preds]
    ctr = [_t(c).float() for c in centernesses]
    b, k = cls[0].shape[:2]
    boxes_l, scores_l, labels_l = [], [], []
    for c, r, q, stride in zip(cls, reg, ctr, strides):
        h, w = c.shape[-2:]
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)  # (hw, 2)
        prob = c.sigmoid().permute(0, 2, 3, 1).reshape(b, -1, k)  # (B, hw, K)
        ctr_prob = q.sigmoid().permute(0, 2, 3, 1).reshape(b, -1, 1)  # (B, hw, 1)
        scores = (prob * ctr_prob).sqrt().reshape(b, -1)  # (B, hw * K)
        top, idx = scores.topk(min(nms_pre, scores.shape[1]), dim=1)
        loc = torch.div(idx, k, rounding_mode="floor")
        dist = r.permute(0, 2, 3, 1).reshape(b, -1, 4).gather(1, loc[..., None].expand(-1, -1, 4))
        p = pts[loc]  # (B, n, 2)
        boxes_l.append(torch.stack([p[..., 0] - dist[..., 0], p[..., 1] - dist[..., 1],
                                    p[..., 0] + dist[..., 2], p[..., 1] + dist[..., 3]], -1))  # fmt: skip
        scores_l.append(top)
        labels_l.append(idx % k)
    boxes, scores, labels = torch.cat(boxes_l, 1), torch.cat(scores_l, 1), torch.cat(labels_l, 1)
    img_hw = torch.tensor([_shape(m, "img_shape") for m in metas], dtype=torch.float32)
    max_xy = img_hw.flip(-1).repeat(1, 2)[:, None, :]  # (B, 1, 4)
    boxes = torch.minimum(boxes.clamp(min=0), max_xy)
    keep = scores > score_thr
    img_idx = torch.arange(b)[:, None].expand_as(keep)[keep]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    order = batched_nms(boxes, scores, img_idx * k + labels, nms_iou)
    results = []
    for i, meta in enumerate(metas):
        sel = order[img_idx[order] == i][:max_per_img]
        sx, sy = (float(v) for v in meta.get("scale_factor", (1.0, 1.0))[:2])
        h0, w0 = _shape(meta, "ori_shape")
        det = boxes[sel] / torch.tensor([sx, sy, sx, sy])
        det[:, 0::2] = det[:, 0::2].clamp(0, w0)
        det[:, 1::2] = det[:, 1::2].clamp(0, h0)
        results.append(dict(bboxes=det.numpy(), scores=scores[sel].numpy(), labels=labels[sel].numpy()))
    return results


def decode_seg(logits: Any, metas: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    """(B, K, h, w) logits -> per image (H0, W0) int64 labels (argmax at the original size)."""
    x = _t(logits)
    return [to_original(x[i], m).argmax(0).numpy() for i, m in enumerate(metas)]


def decode_depth(
    depth: Any, metas: Sequence[dict[str, Any]], *, min_depth: float, max_depth: float, **_: Any
) -> list[np.ndarray]:
    """(B, 1, h, w) depth in metres -> per image (H0, W0) float32, clamped to the head's range."""
    x = _t(depth)
    return [to_original(x[i], m)[0].clamp(min_depth, max_depth).numpy() for i, m in enumerate(metas)]


def decode_head(entry: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]) -> list[Any]:
    name, kind = entry["name"], entry.get("kind")
    if kind == "fcos":
        n = len(entry["strides"])
        cls, bbox, ctr = ([outputs[f"{name}.{tag}_{i}"] for i in range(n)] for tag in ("cls", "bbox", "ctr"))
        return decode_fcos(cls, bbox, ctr, metas, **entry)
    if kind == "seg":
        return decode_seg(outputs[f"{name}.logits"], metas)
    if kind == "depth":
        return decode_depth(outputs[f"{name}.depth"], metas, **entry)
    raise NotImplementedError(f"no runtime decoder for head {name!r} of type {entry.get('type')}")


def decode(
    manifest: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Decode every head of the manifest: per image ``{head name: result}``."""
    per_head = {e["name"]: decode_head(e, outputs, metas) for e in manifest["heads"] if e.get("kind")}
    return [{name: res[i] for name, res in per_head.items()} for i in range(len(metas))]


def fill_data_samples(manifest: dict[str, Any], outputs: dict[str, Any], data_samples: list) -> list[str]:
    """Write decoded predictions into data samples like the heads' ``predict`` does (``pred_instances``,
    ``pred_sem_seg``, ``pred_depth_map``), so the config's evaluator can score an exported model. Returns
    the heads it could not decode (their tasks get no prediction)."""
    from mmengine.structures import InstanceData, PixelData

    metas = [s.metainfo for s in data_samples]
    skipped = []
    for entry in manifest["heads"]:
        kind = entry.get("kind")
        if not kind:
            skipped.append(entry["name"])
            continue
        results = decode_head(entry, outputs, metas)
        for sample, res in zip(data_samples, results):
            if kind == "fcos":
                sample.pred_instances = InstanceData(
                    bboxes=torch.from_numpy(res["bboxes"]),
                    scores=torch.from_numpy(res["scores"]),
                    labels=torch.from_numpy(res["labels"]),
                )
            elif kind == "seg":
                sample.pred_sem_seg = PixelData(data=torch.from_numpy(res)[None])
            else:
                sample.pred_depth_map = PixelData(data=torch.from_numpy(res)[None])
    return skipped
