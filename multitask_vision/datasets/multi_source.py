"""``MultiSourceDataset``: several datasets, each labelling some tasks, behind one index space.

Each source is a dataset config with its own pipeline. Sample ``i`` of the whole belongs to the source
``source_of(i)``; samplers use this to build batches that come from one source only. The metainfo gives, for
every task, the class names the labelling sources agree on (``task_meta``), which the task-routed metrics use.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from multitask_vision.datasets.base import task_mapping
from multitask_vision.registry import DATASETS
from multitask_vision.utils.errors import UserError

# annotation kind -> metainfo key holding its class names (first present wins)
_CLASS_KEYS = {"instances": ("classes",), "sem_seg": ("seg_classes", "classes"), "depth": ()}


def source_task_meta(dataset, task: str) -> dict:
    """Metainfo of one task in one source: its class names, if the annotation kind has classes."""
    kind = dataset.tasks[task]
    for key in _CLASS_KEYS.get(kind, ()):
        if key in dataset.metainfo:
            return dict(classes=tuple(dataset.metainfo[key]))
    return {}


@DATASETS.register_module()
class MultiSourceDataset(Dataset):
    """Concatenation of source datasets that keeps track of which source each sample came from.

    Args:
        sources: dataset configs (or built datasets). Each must expose ``tasks`` (task name -> annotation
            kind) and a unique ``source_name``.
        only_tasks: keep only these tasks: the sources' task mappings are narrowed before they are built
            (their samples lose the other labels; samples left with no task are dropped, and sources left
            with no task are skipped). For single-task baselines and ablations without editing the sources.
    """

    def __init__(self, sources: Sequence[dict | Dataset], only_tasks: Sequence[str] | None = None) -> None:
        if not sources:
            raise UserError("MultiSourceDataset needs at least one source")
        if only_tasks is not None:
            sources = self._narrow(sources, set(only_tasks))
        self.datasets: list[Any] = [DATASETS.build(s) if isinstance(s, dict) else s for s in sources]
        self.source_names: list[str] = []
        for i, ds in enumerate(self.datasets):
            name = getattr(ds, "source_name", None) or type(ds).__name__
            if name in self.source_names:
                raise UserError(
                    f"sources[{i}] and another source are both named {name!r}: give each a source_name"
                )
            if not hasattr(ds, "tasks"):
                raise UserError(f"sources[{i}] ({name}) does not say which tasks it labels (no .tasks)")
            if len(ds) == 0:
                raise UserError(f"sources[{i}] ({name}) is empty")
            self.source_names.append(name)
        self.cumulative_sizes: list[int] = []
        total = 0
        for ds in self.datasets:
            total += len(ds)
            self.cumulative_sizes.append(total)
        self._metainfo = dict(sources=tuple(self.source_names), task_meta=self._task_meta())

    @staticmethod
    def _narrow(sources: Sequence[dict | Dataset], keep: set[str]) -> list[dict]:
        narrowed = []
        for i, src in enumerate(sources):
            if not isinstance(src, dict):
                raise UserError(f"only_tasks needs source configs, but sources[{i}] is a built dataset")
            cls = DATASETS.get(src["type"]) if isinstance(src["type"], str) else src["type"]
            mapping = task_mapping(src.get("tasks"), f"sources[{i}] ({src['type']})")
            mapping = mapping or getattr(cls, "DEFAULT_TASKS", None)
            if mapping is None:
                raise UserError(
                    f"only_tasks: sources[{i}] ({src['type']}) does not say which tasks it labels"
                )
            kept = {t: k for t, k in mapping.items() if t in keep}
            if kept:
                narrowed.append(dict(src, tasks=kept))
        if not narrowed:
            raise UserError(f"only_tasks={sorted(keep)}: no source labels any of these tasks")
        return narrowed

    def _task_meta(self) -> dict[str, dict]:
        meta: dict[str, dict] = {}
        owner: dict[str, str] = {}
        for name, ds in zip(self.source_names, self.datasets):
            for task in ds.tasks:
                m = source_task_meta(ds, task)
                if task in meta and meta[task] != m:
                    raise UserError(
                        f"sources {owner[task]!r} and {name!r} both label task {task!r} but with different "
                        f"classes: {meta[task].get('classes')} vs {m.get('classes')}; name the tasks apart"
                    )
                meta.setdefault(task, m)
                owner.setdefault(task, name)
        return meta

    @property
    def metainfo(self) -> dict:
        return dict(self._metainfo)

    @property
    def tasks(self) -> list[str]:
        """Every task some source labels."""
        return list(self._metainfo["task_meta"])

    @property
    def source_sizes(self) -> list[int]:
        return [len(ds) for ds in self.datasets]

    def source_of(self, idx: int) -> int:
        return bisect.bisect_right(self.cumulative_sizes, idx)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int):
        if idx < 0:
            idx += len(self)
        s = self.source_of(idx)
        offset = idx - (self.cumulative_sizes[s - 1] if s else 0)
        return self.datasets[s][offset]
