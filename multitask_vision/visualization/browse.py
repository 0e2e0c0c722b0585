"""Browsing a dataset without a model (``visualize.py --no-model``), as mmdet's ``browse_dataset`` does: the
ground truth of every task of every source, drawn on the image *as the pipeline delivers it* (after its
resizing, flipping, cropping and photometric transforms: the training pipeline by default), so a new dataset or
pipeline is checked before training.

One row per task the sample's source maps (``input | ground truth | key``); a task the sample is not labelled
for shows "not labelled". A task is drawn by the drawer of the field its annotation kind fills
(:data:`~multitask_vision.structures.GT_FIELDS`: ``instances`` -> ``gt_instances`` -> :class:`DetectionDrawer`),
or the one the config's ``visualization.drawers`` names for it, through the drawer's ``draw_ground_truth``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multitask_vision.registry import DRAWERS
from multitask_vision.structures import GT_FIELDS, labelled_tasks
from multitask_vision.visualization.drawers import TaskDrawer, TaskPanels, to_numpy
from multitask_vision.visualization.grid import (
    VIS_KEYS,
    DrawerError,
    SampleGrid,
    TaskRow,
    check_overrides,
    compose,
    sample_name,
    to_panel,
)


def source_tasks(dataset: Any) -> dict[str, dict[str, str]]:
    """``{source name: {task: annotation kind}}`` of a (multi-source) dataset."""
    if hasattr(dataset, "source_names"):
        return {name: dict(ds.tasks) for name, ds in zip(dataset.source_names, dataset.datasets)}
    name = getattr(dataset, "source_name", None) or type(dataset).__name__
    return {name: dict(getattr(dataset, "tasks", {}) or {})}


def pipeline_image(inputs: Any) -> np.ndarray:
    """A packed input (3, H, W), BGR as OpenCV loads it (float after a photometric transform), as RGB uint8."""
    img = to_numpy(inputs).transpose(1, 2, 0)[..., ::-1]
    return np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


class GroundTruthRenderer:
    """Grids of the ground truth of collated pipeline outputs (``dict(inputs=[...], data_samples=[...])``).

    Args:
        tasks: ``{source name: {task: annotation kind}}`` (:func:`source_tasks`).
        task_styles: ``{task: dict(classes=..., palette=...)}`` (``grid.task_styles``).
        drawers: ``{task: drawer name}`` overriding the kind-based choice.
        panel_size: long side of every panel in pixels. score_thr: unused (ground truth has no scores); accepted
            so that the config's ``visualization`` section serves both modes.
    """

    def __init__(
        self,
        tasks: dict[str, dict[str, str]],
        task_styles: dict[str, dict] | None = None,
        drawers: dict[str, str] | None = None,
        panel_size: int = 256,
        score_thr: float = 0.3,
    ) -> None:
        self.tasks = tasks
        self.styles = task_styles or {}
        every_task = list(dict.fromkeys(t for mapping in tasks.values() for t in mapping))
        self.overrides = check_overrides(dict(drawers or {}), every_task)
        self.panel_size = panel_size
        self._drawers: dict[str, TaskDrawer] = {}

    @classmethod
    def from_config(cls, tasks: dict, cfg_vis: dict | None, task_styles: dict) -> GroundTruthRenderer:
        cfg_vis = dict(cfg_vis or {})
        unknown = sorted(set(cfg_vis) - set(VIS_KEYS))
        if unknown:
            raise ValueError(f"visualization: unknown keys {unknown} (allowed: {list(VIS_KEYS)})")
        return cls(tasks, task_styles, **cfg_vis)

    def drawer(self, task: str, kind: str) -> TaskDrawer:
        if task not in self._drawers:
            if task in self.overrides:
                found = self.overrides[task]
            else:
                field = GT_FIELDS.get(kind)
                matches = [c for c in DRAWERS.module_dict.values() if field and c.fields[1:2] == (field,)]
                if not matches:
                    raise DrawerError(
                        f"task {task!r} (annotation kind {kind!r}) has no drawer for its ground truth "
                        f"{field or '(unknown field)'}; map the task in the config: "
                        f"visualization=dict(drawers=dict({task}='MyDrawer'))"
                    )
                found = matches[0]
            style = self.styles.get(task, {})
            self._drawers[task] = found(task, style.get("classes"), style.get("palette"))
        return self._drawers[task]

    def render(self, data: dict) -> list[SampleGrid]:
        grids = []
        for i, (inputs, sample) in enumerate(zip(data["inputs"], data["data_samples"])):
            panel_img, scale = to_panel(pipeline_image(inputs), self.panel_size)
            meta = sample.metainfo
            source = str(meta.get("source", ""))
            if source not in self.tasks:
                raise ValueError(f"sample {sample_name(meta, i)!r} comes from unknown source {source!r}")
            grid = SampleGrid(source, sample_name(meta, i))
            labelled = labelled_tasks(sample)
            for task, kind in self.tasks[source].items():
                drawer = self.drawer(task, kind)
                out = TaskPanels()
                if task in labelled and drawer.gt_field and drawer.gt_field in sample:
                    out = drawer.draw_ground_truth(panel_img, getattr(sample, drawer.gt_field), scale)
                grid.rows.append(TaskRow(task, task, {"input": panel_img, **out.panels}, out.key))
            grid.image = compose(grid, labelled)
            grids.append(grid)
        return grids
