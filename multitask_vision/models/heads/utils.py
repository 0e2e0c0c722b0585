"""Helpers shared by the native blocks (backbones, necks, heads): feature packing, specs, ground truth, resizing.

Dense predictions follow the data preprocessor's layout: every image of a batch sits at the top-left of a
``batch_input_shape`` canvas, its unpadded part is ``img_shape`` and it was resized from ``ori_shape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from multitask_vision.models.spec import FeatureSpec, Spec, describe


def to_feature_list(x: Tensor | Sequence[Tensor] | dict[str, Tensor]) -> list[Tensor]:
    """A block's input as a list of tensors: a tensor, a tuple/list of tensors, or a dict (in key order)."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, dict):
        return list(x.values())
    return list(x)


def spec_list(spec: Spec, where: str) -> list[FeatureSpec]:
    """Twin of :func:`to_feature_list` for specs; ``where`` names the block in the error message."""
    if isinstance(spec, FeatureSpec):
        return [spec]
    specs = list(spec.values()) if isinstance(spec, dict) else list(spec) if isinstance(spec, tuple) else []
    if not specs or not all(isinstance(s, FeatureSpec) for s in specs):
        raise ValueError(f"{where}: expects a tensor or a flat tuple/dict of tensors, got {describe(spec)}")
    return specs


def check_num_levels(specs: list[FeatureSpec], expected: int, where: str) -> None:
    if len(specs) != expected:
        raise ValueError(
            f"{where}: built for {expected} input level(s) but receives {len(specs)}: {describe(tuple(specs))}"
        )


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of ``value`` over the distributed processes (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value.div_(dist.get_world_size()))
    return value


def meta_value(meta: dict[str, Any], key: str) -> Any:
    """``meta[key]`` from a data sample's metainfo, with an error naming the missing key."""
    if key not in meta:
        raise KeyError(f"data sample metainfo lacks {key!r} (has {sorted(meta)}); the data pipeline sets it")
    return meta[key]


def meta_shape(meta: dict[str, Any], key: str) -> tuple[int, int]:
    """``(H, W)`` of a shape entry (``img_shape``, ``ori_shape``, ``batch_input_shape`` ...) of the metainfo."""
    h, w = meta_value(meta, key)[:2]
    return int(h), int(w)


def stack_pixel_gt(data_samples: list, field: str) -> Tensor:
    """Stack ``sample.<field>.data`` ((C, H, W) or (H, W) each) into (B, C, H, W); sizes must already agree
    (padded)."""
    maps = [getattr(sample, field).data for sample in data_samples]
    sizes = {tuple(m.shape[-2:]) for m in maps}
    if len(sizes) != 1:
        raise ValueError(
            f"{field} sizes differ within the batch ({sorted(sizes)}): the data preprocessor must pad them "
            "to the batch input size"
        )
    return torch.stack([m if m.dim() == 3 else m.reshape(1, *m.shape[-2:]) for m in maps])  # (B, C, H, W)


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
