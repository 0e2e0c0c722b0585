"""What visualize.py needs around the grids: strict checkpoint loading and a few samples of every source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mmengine.dataset import pseudo_collate
from mmengine.runner.checkpoint import load_state_dict

from multitask_vision.utils.checkpoint import load_checkpoint_file


def _few(keys: list[str], n: int = 3) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(model: Any, path: str) -> dict:
    """Load ``path`` (an mmengine checkpoint or a bare state dict) into ``model``, exactly.

    Any missing, unexpected or shape-mismatched key is a ``ValueError`` whose message is one line naming the
    first few keys and their count: a checkpoint of another config must not load partially. Returns the
    checkpoint's ``meta``.
    """
    ckpt = load_checkpoint_file(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds no state_dict")
    state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{len(keys)} {what}{'s' if len(keys) != 1 else ''} {where}: {_few(keys)}"
        for what, where, keys in (
            ("missing key", "(in the model, not in the checkpoint)", missing),
            ("unexpected key", "(in the checkpoint, not in the model)", unexpected),
            ("key", "of another shape", shapes),
        )
        if keys
    ]
    if problems:
        raise ValueError(f"checkpoint {path} does not match the config's model: {'; '.join(problems)}")
    load_state_dict(model, state, strict=True)
    return dict(ckpt.get("meta") or {}) if isinstance(ckpt, dict) else {}


def source_batches(dataset: Any, num: int, batch_size: int = 4) -> Iterator[tuple[str, dict]]:
    """The first ``num`` samples of every source of a (multi-source) dataset, as collated batches."""
    if hasattr(dataset, "cumulative_sizes"):
        starts = [0, *dataset.cumulative_sizes[:-1]]
        ranges = [
            (name, range(s, s + min(num, size)))
            for name, s, size in zip(dataset.source_names, starts, dataset.source_sizes)
        ]
    else:
        ranges = [(getattr(dataset, "source_name", type(dataset).__name__), range(min(num, len(dataset))))]
    for name, idx in ranges:
        idx_list = list(idx)
        for b in range(0, len(idx_list), batch_size):
            yield name, pseudo_collate([dataset[i] for i in idx_list[b : b + batch_size]])
