"""Accepted spellings of a training config, translated into the primary one when a config is loaded.

Every config goes through :func:`normalize_config` after ``--cfg-options`` are merged, in the two functions
that load configs (``engine.launch.load_config`` for train.py / visualize.py, ``models.builder.as_config`` for
``build_model`` and deploy.py), so the Runner and every builder see one vocabulary: ours.

``data = dict(datasets=[...])`` (the spelling of the README this project grew from) is the training data:
it becomes ``train_dataloader.dataset = dict(type='MultiSourceDataset', sources=[...])``. A source without
``pipeline`` gets the config's ``train_pipeline``; without a ``train_dataloader`` the loader is the synthetic
configs' (:data:`DEFAULT_TRAIN_LOADER`: batch 8, homogeneous batches by source, round robin). The validation and
test data keep their own keys. Giving the training data both ways is an error naming both keys.

(The other accepted spellings live where they are parsed: ``args=dict(...)`` and ``inputs='image'`` in
``models.graph``, ``tasks=[...]`` in ``datasets.base``, type aliases in the registries, the deploy config's
``deploy=dict(...)`` in ``compression.config``.)
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_TRAIN_LOADER: dict[str, Any] = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="MultiSourceSampler", shuffle=True),
    batch_sampler=dict(type="MultiSourceBatchSampler", strategy="round_robin"),
)


def normalize_config(cfg: Any, where: str = "config") -> Any:
    """Translate ``cfg``'s accepted spellings into the primary ones, in place; returns ``cfg``. ``where`` names
    the config in errors (``ValueError`` of one line). Idempotent."""
    data = cfg.get("data")
    if data is None:
        return cfg
    if not isinstance(data, dict) or set(data) != {"datasets"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{where}: data= takes one key, datasets=[...] (the training sources), got {got}; the loader's "
            "other settings go in train_dataloader"
        )
    datasets = data["datasets"]
    if (
        not isinstance(datasets, (list, tuple))
        or not datasets
        or not all(isinstance(d, dict) for d in datasets)
    ):
        raise ValueError(
            f"{where}: data.datasets must be a non-empty list of dataset dicts, got {datasets!r}"
        )
    loader = cfg.get("train_dataloader")
    if loader is not None and "dataset" in loader:
        raise ValueError(
            f"{where}: the training data is given twice, as data.datasets and as train_dataloader.dataset; "
            "keep one (train_dataloader.dataset is the primary spelling)"
        )
    sources = []
    for i, source in enumerate(datasets):
        source = copy.deepcopy(dict(source))
        if "pipeline" not in source:
            if cfg.get("train_pipeline") is None:
                raise ValueError(
                    f"{where}: data.datasets[{i}] ({source.get('type')}) has no pipeline and the config no "
                    "train_pipeline to give it"
                )
            source["pipeline"] = copy.deepcopy(cfg["train_pipeline"])
        sources.append(source)
    loader = copy.deepcopy(dict(loader)) if loader is not None else copy.deepcopy(DEFAULT_TRAIN_LOADER)
    loader["dataset"] = dict(type="MultiSourceDataset", sources=sources)
    cfg["train_dataloader"] = loader
    cfg.pop("data")
    return cfg
