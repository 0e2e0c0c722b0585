"""A head's predictions (the fields its ``predict`` writes into a data sample) as plain Python and numpy.

A converter is chosen by the data-sample field, as drawers are: ``pred_instances`` -> boxes (xyxy, original image
pixels), scores, labels and class names; ``pred_sem_seg`` -> a label map and the class names; ``pred_depth_map``
-> a depth map in metres. A new kind of prediction registers its own::

    @register_converter("pred_normals")
    def normals(element, classes, score_thr):
        return dict(normals=element.data.numpy())  # (3, H, W)

and any ``pred_*`` field without a converter is still returned, converted generically (each tensor of the
element as a numpy array under the field's name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.structures import BaseDataElement

# data-sample field -> fn(element, class names or None, score threshold or None) -> plain dict
Converter = Callable[[Any, Sequence[str] | None, float | None], dict[str, Any]]
CONVERTERS: dict[str, Converter] = {}


def register_converter(field: str) -> Callable[[Converter], Converter]:
    def add(fn: Converter) -> Converter:
        CONVERTERS[field] = fn
        return fn

    return add


def to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, BaseDataElement):
        return {k: to_numpy(v) for k, v in x.items()}
    return x


def class_name(classes: Sequence[str] | None, label: int) -> str:
    return str(classes[label]) if classes and 0 <= label < len(classes) else f"class {label}"


@register_converter("pred_instances")
def instances(element: Any, classes: Sequence[str] | None, score_thr: float | None) -> dict[str, Any]:
    """``bboxes`` (N, 4) float32 xyxy in original image pixels, ``scores`` (N,), ``labels`` (N,) int64 and
    ``class_names``; boxes scored below ``score_thr`` are left out."""
    bboxes = to_numpy(element.bboxes).reshape(-1, 4).astype(np.float32)
    labels = to_numpy(element.labels).reshape(-1).astype(np.int64)
    scores = (
        to_numpy(element.scores).reshape(-1).astype(np.float32)
        if "scores" in element
        else np.ones(len(labels), np.float32)
    )
    if score_thr is not None:
        keep = scores >= score_thr
        bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    names = [class_name(classes, int(c)) for c in labels]
    return dict(bboxes=bboxes, scores=scores, labels=labels, class_names=names)


@register_converter("pred_sem_seg")
def sem_seg(element: Any, classes: Sequence[str] | None, score_thr: float | None) -> dict[str, Any]:
    """``label_map`` (H, W) int64 class indices at the original size, ``classes`` (index -> name)."""
    data = to_numpy(element.data)
    return dict(label_map=data.reshape(data.shape[-2:]).astype(np.int64), classes=list(classes or []))


@register_converter("pred_depth_map")
def depth_map(element: Any, classes: Sequence[str] | None, score_thr: float | None) -> dict[str, Any]:
    """``depth`` (H, W) float32 metres at the original size."""
    data = to_numpy(element.data)
    return dict(depth=data.reshape(data.shape[-2:]).astype(np.float32))


def head_result(
    sample: Any, task: str, classes: Sequence[str] | None = None, score_thr: float | None = None
) -> dict[str, Any]:
    """One head's predictions in one image: ``task`` plus what the converters of the ``pred_*`` fields it
    filled give (a field without a converter: ``{field: {key: numpy array}}``)."""
    out: dict[str, Any] = dict(task=task)
    for name in sorted(sample.keys()):
        if not name.startswith("pred_"):
            continue  # e.g. seg_logits: intermediate, and large
        element = getattr(sample, name)
        convert = CONVERTERS.get(name)
        out.update(convert(element, classes, score_thr) if convert else {name: to_numpy(element)})
    return out
