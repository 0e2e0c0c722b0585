"""What every dataset source shares: the task mapping, bad-sample handling and metainfo helpers.

A source maps the task names the model's heads use to the annotation kinds it has (``instances``,
``sem_seg``, ``depth``); each sample's ``tasks`` says which of them it is labelled for. A list of task names the
project knows (:data:`TASK_KINDS`) is accepted as well, e.g. ``tasks=['detection', 'segmentation']``.
"""

from __future__ import annotations

import logging
import os
import os.path as osp
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from multitask_vision.utils.errors import DataError, UserError


def voc_colormap(num: int = 256) -> list[tuple[int, int, int]]:
    """The VOC palette: colour ``i`` of the standard bit-interleaved map (0 black, 1 dark red, ...)."""
    colours = []
    for i in range(num):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


# The task names the project knows, and the annotation kind each is labelled with: what a source's ``tasks``
# given as a list of names (the origin README's spelling) means. Any other task is mapped explicitly, e.g.
# ``tasks=dict(seg_voc='sem_seg')``.
TASK_KINDS: dict[str, str] = {"detection": "instances", "segmentation": "sem_seg", "depth": "depth"}


def task_mapping(tasks: Any, owner: str) -> Any:
    """``tasks`` as ``{task: annotation kind}``: a list of known task names (:data:`TASK_KINDS`) is mapped to
    their kinds; anything else is returned as given (the source checks it). ``owner`` names the source in errors.
    """
    if not isinstance(tasks, (list, tuple)):
        return tasks
    for i, task in enumerate(tasks):
        if task not in TASK_KINDS:
            known = ", ".join(f"{t} ({k})" for t, k in TASK_KINDS.items())
            raise ValueError(
                f"{owner}: tasks[{i}] = {task!r} is not a task name whose annotation kind is known ({known}); "
                f"map it to a kind: tasks=dict({task}='instances' | 'sem_seg' | 'depth')"
            )
        if task in tasks[:i]:
            raise ValueError(f"{owner}: tasks lists {task!r} twice")
    return {task: TASK_KINDS[task] for task in tasks}


class MultiTaskSource(BaseDataset):
    """Base of the dataset sources: maps the model's task names to this source's annotation kinds.

    Args:
        tasks: ``{task name used by the model's heads: annotation kind}``; the kinds a subclass provides are
            ``ANNOTATION_KINDS``. ``None`` -> ``DEFAULT_TASKS``. A list of task names the project knows
            (:data:`TASK_KINDS`: ``['detection', 'segmentation']``) stands for their usual kinds.
        source_name: written into every sample's ``source``; default the class name.
        skip_bad: skip (with a warning, and a logged count) samples whose files are missing, corrupt or hold
            values their task does not allow, instead of raising
            :class:`~multitask_vision.utils.errors.DataError`: at parse time (annotation files) and, in
            training, when a sample is loaded (images and maps; mmengine then draws another sample).
        holdout: carve a seeded, reproducible part out of the split, e.g. a validation set from a training
            split that has none: ``dict(num=95, seed=0, part='held')`` keeps the 95 held-out samples,
            ``part='rest'`` the others (the two never overlap; ``num`` may be a fraction of the split instead).
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments (``pipeline``, ``filter_cfg``, ``indices``,
            ``serialize_data``, ``test_mode``, ``lazy_init``, ``max_refetch``).

    Every data_info holds ``img_path``, ``img_id``, ``height``, ``width``, ``source``, ``tasks`` (names of the
    tasks the sample is labelled for), ``seg_fields`` (empty list, filled by mmseg/mmdet loaders) and, per
    labelled kind: ``instances`` (``bbox`` 0-based xyxy floats, ``bbox_label``, ``ignore_flag``),
    ``seg_map_path`` (+ ``reduce_zero_label=False``), ``depth_map_path`` + ``depth_scale`` (metres =
    stored value / depth_scale).
    """

    ANNOTATION_KINDS: tuple[str, ...] = ()
    DEFAULT_TASKS: Mapping[str, str] = {}
    # filter_cfg keys this source understands; any other key is an error
    FILTER_KEYS: tuple[str, ...] = ("min_size",)

    def __init__(
        self,
        *,
        tasks: Mapping[str, str] | Sequence[str] | None = None,
        source_name: str | None = None,
        skip_bad: bool = False,
        holdout: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tasks = self._check_tasks(self.DEFAULT_TASKS if tasks is None else tasks)
        self.source_name = source_name or type(self).__name__
        self.skip_bad = skip_bad
        self.num_skipped = 0
        self.holdout = _check_holdout(holdout)
        filter_cfg = kwargs.get("filter_cfg")
        if filter_cfg:
            unknown = sorted(set(filter_cfg) - set(self.FILTER_KEYS))
            if unknown:
                raise UserError(
                    f"{type(self).__name__}: unknown filter_cfg key(s) {unknown}; known: {list(self.FILTER_KEYS)}"
                )
        super().__init__(**kwargs)
        self._num_seg_classes = len(self._metainfo.get("seg_classes", ())) or None

    # ---- task mapping -------------------------------------------------------------------------------
    def _check_tasks(self, tasks: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
        tasks = task_mapping(tasks, type(self).__name__)
        if not isinstance(tasks, Mapping) or not tasks:
            raise UserError(
                f"{type(self).__name__}: tasks must be a non-empty dict task name -> kind (or a list of known "
                f"task names), got {tasks!r}"
            )
        out = {}
        for name, kind in tasks.items():
            if kind not in self.ANNOTATION_KINDS:
                raise UserError(
                    f"{type(self).__name__}: tasks[{name!r}] = {kind!r} is not an annotation kind of this source "
                    f"(one of {list(self.ANNOTATION_KINDS)})"
                )
            out[str(name)] = kind
        return out

    @property
    def task_names(self) -> tuple[str, ...]:
        """Names of every task this source can label (a sample may be labelled for fewer)."""
        return tuple(self.tasks)

    @property
    def kinds(self) -> set[str]:
        """Annotation kinds the task mapping asks for."""
        return set(self.tasks.values())

    def tasks_for(self, available_kinds: set[str] | frozenset[str]) -> tuple[str, ...]:
        """Task names labelled by a sample that has annotations of ``available_kinds``."""
        return tuple(name for name, kind in self.tasks.items() if kind in available_kinds)

    # ---- loading ------------------------------------------------------------------------------------
    def _read_split(self) -> list[str]:
        if not osp.isdir(self.data_root):
            raise DataError(f"{type(self).__name__}: data_root {self.data_root!r} is not a directory")
        if not osp.isfile(self.ann_file):
            raise DataError(f"{type(self).__name__}: split file {self.ann_file!r} does not exist")
        with open(self.ann_file, encoding="utf-8") as f:
            # the id is the first field (VOC's per-class lists add a flag after it)
            ids = [line.split()[0] for line in f if line.strip()]
        if not ids:
            raise DataError(f"{self.source_name}: split file {self.ann_file} lists no samples (it is empty)")
        if self.holdout is None:
            return ids
        num = self.holdout["num"]
        num = int(round(num * len(ids))) if isinstance(num, float) else num
        if not 0 < num < len(ids):
            raise UserError(
                f"{self.source_name}: holdout.num={self.holdout['num']} must leave samples on both sides of "
                f"the {len(ids)} of {self.ann_file}"
            )
        held = set(np.random.default_rng(self.holdout["seed"]).permutation(len(ids))[:num].tolist())
        keep = self.holdout["part"] == "held"
        return [i for k, i in enumerate(ids) if (k in held) == keep]

    def parse_sample(self, img_id: str) -> dict:
        """One sample's data_info; raise :class:`~multitask_vision.utils.errors.DataError` naming the bad file."""
        raise NotImplementedError

    def load_data_list(self) -> list[dict]:
        ids = self._read_split()
        self._prepare_listing()
        data_list = []
        self.num_skipped = 0
        unlabelled = 0
        for img_id in ids:
            try:
                info = self.parse_sample(img_id)
            except (OSError, ValueError) as err:
                if not self.skip_bad:
                    raise err if isinstance(err, DataError) else DataError(str(err)) from err
                self.num_skipped += 1
                if self.num_skipped <= 10:
                    print_log(f"{self.source_name}: skipping {img_id!r}: {err}", "current", logging.WARNING)
                continue
            if not info["tasks"]:
                unlabelled += 1
                continue
            data_list.append(info)
        if self.num_skipped:
            print_log(
                f"{self.source_name}: skipped {self.num_skipped} of {len(ids)} samples with missing/corrupt files "
                f"(skip_bad=True)",
                "current",
                logging.WARNING,
            )
        if not data_list:
            raise DataError(
                f"{self.source_name}: no usable sample among the {len(ids)} of {self.ann_file} ({self.num_skipped} "
                f"skipped, {unlabelled} labelled for none of the tasks {self.task_names})"
            )
        if unlabelled:
            print_log(
                f"{self.source_name}: dropped {unlabelled} samples labelled for none of the tasks {self.task_names}",
                "current",
            )
        self._log_summary(data_list)
        return data_list

    def get_data_info(self, idx: int) -> dict:
        """The sample's data_info, plus ``num_seg_classes`` for the loader's label-range check."""
        info = super().get_data_info(idx)
        if "seg_map_path" in info and self._num_seg_classes:
            info["num_seg_classes"] = self._num_seg_classes
        return info

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output; with ``skip_bad=True`` in training, ``None`` for a sample whose files fail a
        load-time check (mmengine's dataset then draws another), with a warning and a count."""
        try:
            return super().prepare_data(idx)
        except DataError as err:
            if not self.skip_bad or self.test_mode:
                raise
            self.num_skipped += 1
            print_log(
                f"{self.source_name}: skipped a sample ({self.num_skipped} so far in this process): {err}",
                "current",
                logging.WARNING,
            )
            return None

    def _prepare_listing(self) -> None:
        """Hook run once before parsing: list annotation folders (one ``listdir`` instead of a stat per id)."""

    def _log_summary(self, data_list: list[dict]) -> None:
        counts = Counter(t for info in data_list for t in info["tasks"])
        per_task = ", ".join(f"{t}: {counts.get(t, 0)}" for t in self.task_names)
        print_log(
            f"{self.source_name} ({osp.basename(self.ann_file)}): {len(data_list)} samples ({per_task})",
            "current",
        )

    def filter_data(self) -> list[dict]:
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        min_size = self.filter_cfg.get("min_size", 0)
        empty = self.filter_cfg.get("filter_empty_gt", False)
        return [
            info
            for info in self.data_list
            if min(info["width"], info["height"]) >= min_size
            and not (empty and "instances" in info and not info["instances"])
        ]

    def get_cat_ids(self, idx: int) -> list[int]:
        return [inst["bbox_label"] for inst in self.get_data_info(idx).get("instances", [])]

    def _base_info(self, img_id: str, img_path: str, height: int, width: int) -> dict:
        return dict(
            img_path=img_path,
            img_id=img_id,
            height=int(height),
            width=int(width),
            source=self.source_name,
            seg_fields=[],
        )


def _check_holdout(holdout: Mapping[str, Any] | None) -> dict | None:
    if holdout is None:
        return None
    cfg = dict(holdout)
    unknown = sorted(set(cfg) - {"num", "seed", "part"})
    num = cfg.get("num")
    valid_num = (isinstance(num, int) and num > 0) or (isinstance(num, float) and 0 < num < 1)
    if (
        unknown
        or not valid_num
        or cfg.get("part") not in ("held", "rest")
        or not isinstance(cfg.get("seed"), int)
    ):
        raise UserError(
            f"holdout must be dict(num=<count, or fraction in (0, 1)>, seed=<int>, part='held'|'rest'), "
            f"got {holdout!r}"
        )
    return cfg


def list_dir_names(folder: str) -> frozenset[str]:
    return frozenset(os.listdir(folder)) if osp.isdir(folder) else frozenset()


def read_image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` from an image file's header (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"unreadable image {path}: {err}") from None


def complete_metainfo(metainfo: Mapping | None, *, seg_has_background: bool) -> dict | None:
    """Derive ``palette``/``seg_classes``/``seg_palette`` from user ``classes`` that came without them.

    mmengine merges the user's metainfo over ``METAINFO`` key by key, which would otherwise pair new classes
    with the default palette and segmentation classes. ``seg_has_background``: mask value 0 is a background
    class before the detection classes (VOC); otherwise the segmentation classes are the classes (NYU).
    """
    if metainfo is None:
        return None
    meta = dict(metainfo)
    if not seg_has_background and "seg_classes" in meta and "classes" not in meta:
        meta["classes"] = meta["seg_classes"]
    if "classes" in meta:
        classes = tuple(meta["classes"])
        meta["classes"] = classes
        meta.setdefault("palette", voc_colormap(len(classes) + 1)[1:])
        meta.setdefault("seg_classes", (("background",) if seg_has_background else ()) + classes)
    if "seg_classes" in meta:
        seg_classes = tuple(meta["seg_classes"])
        meta["seg_classes"] = seg_classes
        colours = voc_colormap(len(seg_classes) + 1)
        meta.setdefault("seg_palette", colours[:-1] if seg_has_background else colours[1:])
    return meta
