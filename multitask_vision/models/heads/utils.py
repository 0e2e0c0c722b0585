"""Helpers shared by the native blocks (backbones, necks, heads): feature packing, specs, ground truth, resizing.

Resizing and the metainfo readers live with the decoding they serve (:mod:`multitask_vision.models.heads.decoding`,
shared with the runtime helper of exported models) and are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from multitask_vision.models.heads.decoding import meta_shape, meta_value, resize, to_original  # noqa: F401
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
