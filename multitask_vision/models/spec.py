"""What a block publishes about its outputs: channels and stride of every feature map.

A spec mirrors the structure of the output: a :class:`FeatureSpec` for a tensor, a ``dict`` of specs for a
dict output (``backbone.layer4``), a ``tuple`` of specs for a tuple/list output (``neck.0``). The graph uses
specs to check every edge at build time, before any tensor flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FeatureSpec:
    """A (B, channels, H / stride, W / stride) feature map."""

    channels: int
    stride: int = 1


Spec = FeatureSpec | dict[str, Any] | tuple[Any, ...] | None

IMAGE_SPEC = FeatureSpec(channels=3, stride=1)


def select(spec: Spec, path: list[str], where: str) -> Spec:
    """Follow dotted sub-output ``path`` into ``spec``; ``where`` names the edge for the error message."""
    for key in path:
        if isinstance(spec, dict):
            if key not in spec:
                raise KeyError(f"{where}: no sub-output {key!r}; available: {sorted(spec)}")
            spec = spec[key]
        elif isinstance(spec, tuple):
            if not key.lstrip("-").isdigit() or not -len(spec) <= int(key) < len(spec):
                raise KeyError(f"{where}: sub-output {key!r} is not an index of a {len(spec)}-tuple")
            spec = spec[int(key)]
        else:
            raise KeyError(f"{where}: cannot take sub-output {key!r} of a single tensor")
    return spec


def select_value(value: Any, path: list[str]) -> Any:
    """Runtime twin of :func:`select` for real outputs (already validated at build time)."""
    for key in path:
        value = value[key] if isinstance(value, dict) else value[int(key)]
    return value


def flat_channels(spec: Spec) -> list[int]:
    """Channels of every tensor in ``spec`` in order (dicts in insertion order)."""
    if isinstance(spec, FeatureSpec):
        return [spec.channels]
    if isinstance(spec, dict):
        return [c for s in spec.values() for c in flat_channels(s)]
    if isinstance(spec, tuple):
        return [c for s in spec for c in flat_channels(s)]
    return []


def describe(spec: Spec) -> str:
    if isinstance(spec, FeatureSpec):
        return f"{spec.channels}ch/s{spec.stride}"
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, tuple):
        return "(" + ", ".join(describe(s) for s in spec) + ")"
    return "?"


def check_in_channels(expected: int | list[int] | tuple[int, ...], spec: Spec, where: str) -> None:
    """Check a consumer's declared ``in_channels`` against what its inputs really carry.

    ``expected`` int: every incoming tensor has that many channels (a head shared over FPN levels);
    a list: one entry per incoming tensor, in order.
    """
    got = flat_channels(spec)
    if not got:
        return
    if isinstance(expected, int):
        bad = [i for i, c in enumerate(got) if c != expected]
        if bad:
            raise ValueError(
                f"{where}: expects in_channels={expected} but receives {describe(spec)}"
                f" (tensor {bad[0]} has {got[bad[0]]} channels)"
            )
        return
    expected = list(expected)
    if len(expected) != len(got):
        raise ValueError(
            f"{where}: expects {len(expected)} inputs with in_channels={expected} "
            f"but receives {len(got)}: {describe(spec)}"
        )
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            raise ValueError(
                f"{where}: in_channels[{i}]={e} but input {i} has {g} channels (receives {describe(spec)})"
            )
