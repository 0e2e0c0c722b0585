"""What visualize.py needs around the grids: a few samples of every source, collated.

(The model and its weights come from :func:`multitask_vision.models.builder.build_model`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mmengine.dataset import pseudo_collate


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
