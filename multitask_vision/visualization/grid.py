"""Per-sample grids: input | prediction | ground truth (| extra panels) | key, one row per head.

Every head predicts on every sample; a task the sample is not labelled for shows its prediction only (the
ground-truth panel says "not labelled"). Which drawer draws a head is decided by the fields its ``predict``
fills (``pred_instances`` -> :class:`DetectionDrawer`, ...), or by the config::

    visualization = dict(drawers=dict(my_task="MyDrawer"), score_thr=0.3, panel_size=256)
"""

from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field
from typing import Any

import cv2
import mmcv
import numpy as np
import torch
from mmengine.model import is_model_wrapper

from multitask_vision.registry import DRAWERS
from multitask_vision.structures import labelled_tasks
from multitask_vision.visualization.canvas import hstack, placeholder, text_strip, vstack
from multitask_vision.visualization.drawers import TaskDrawer, TaskPanels, resize_map, to_numpy

VIS_KEYS = ("drawers", "score_thr", "panel_size")
GAP, HEADER_H, TITLE_H = 4, 20, 24  # pixels between panels, above a row's panels, above a grid


class DrawerError(ValueError):
    """A task whose predictions no registered drawer can draw, or a bad ``visualization.drawers`` entry."""


@dataclass
class TaskRow:
    task: str
    head: str
    panels: dict[str, np.ndarray]  # 'input', 'prediction', ['ground truth'], [extra panels]
    key: np.ndarray | None = None


@dataclass
class SampleGrid:
    source: str
    name: str  # file stem of the sample
    rows: list[TaskRow] = field(default_factory=list)
    image: np.ndarray | None = None  # RGB uint8


def unwrap(model: Any) -> Any:
    return model.module if is_model_wrapper(model) else model


@torch.no_grad()
def predict_per_head(model: Any, data: dict) -> tuple[list, dict[str, list]]:
    """Run the trunk once and every head separately, each into fresh samples that carry only metainfo.

    Returns ``(samples, {head name: samples with only that head's predictions})``: ``samples`` are the
    preprocessed inputs' samples (with ground truth); which fields a head fills is what its samples hold.
    """
    model = unwrap(model)
    data = model.data_preprocessor(data, False)
    samples = data["data_samples"]
    return samples, model.predict_per_head(data["inputs"], samples)


def drawer_for_fields(task: str, head: str, fields: set[str]) -> list[type]:
    """The drawers of the fields a head filled (several when a head fills several kinds)."""
    found = [cls for cls in DRAWERS.module_dict.values() if cls.fields and cls.fields[0] in fields]
    if found:
        return found
    shown = sorted(f for f in fields if f.startswith("pred_")) or sorted(fields) or ["(no field)"]
    known = ", ".join(f"{n}: {'/'.join(c.fields)}" for n, c in DRAWERS.module_dict.items())
    raise DrawerError(
        f"task {task!r} (head {head!r}) predicts {', '.join(shown)}, which no drawer draws (drawers: {known}); "
        f"register one: @DRAWERS.register_module() class MyDrawer(TaskDrawer) with fields=({shown[0]!r}, "
        f"'gt_...') in multitask_vision.visualization, or map the task in the config: "
        f"visualization=dict(drawers=dict({task}='MyDrawer'))"
    )


def make_drawers(
    heads: dict[str, str],
    per_head: dict[str, list],
    styles: dict[str, dict],
    overrides: dict[str, type],
    score_thr: float,
) -> dict[str, list[TaskDrawer]]:
    """The drawers of each head (``{head name: task}``): the config's override for its task, else the drawers
    of the fields its first sample in ``per_head`` holds; classes and palette from ``styles``."""
    out = {}
    for name, task in heads.items():
        fields = set(per_head[name][0].keys()) if per_head.get(name) else set()
        classes = [overrides[task]] if task in overrides else drawer_for_fields(task, name, fields)
        style = styles.get(task, {})
        out[name] = [
            c(task, style.get("classes"), style.get("palette"), score_thr=score_thr) for c in classes
        ]
    return out


def check_overrides(overrides: dict, tasks: list[str]) -> dict[str, type]:
    """``visualization.drawers``: task name -> registered drawer name."""
    out = {}
    for task, name in overrides.items():
        if task not in tasks:
            raise DrawerError(
                f"visualization.drawers names task {task!r}, which no head predicts (tasks: {tasks})"
            )
        cls = DRAWERS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise DrawerError(
                f"visualization.drawers.{task}={name!r} is not a registered drawer "
                f"(drawers: {sorted(DRAWERS.module_dict)}); register it with @DRAWERS.register_module()"
            )
        out[task] = cls
    return out


def original_shape(meta: dict) -> tuple[int, int]:
    """(H, W) at which predictions are made: ``ori_shape``, else ``img_shape``."""
    shape = meta.get("ori_shape") or meta["img_shape"]
    return int(shape[0]), int(shape[1])


def display_image(sample: Any, batch_input: torch.Tensor | None = None) -> np.ndarray:
    """The sample's image as the model saw it, at its original size, RGB: read from ``img_path`` (flipped like
    the pipeline did), else the packed (BGR) input resized back."""
    meta = sample.metainfo
    h, w = original_shape(meta)
    path = meta.get("img_path")
    if path and osp.isfile(path):
        img = mmcv.imread(path, channel_order="rgb")
        if meta.get("flip"):
            img = mmcv.imflip(img, direction=meta.get("flip_direction", "horizontal"))
    elif batch_input is not None:
        img = to_numpy(batch_input).transpose(1, 2, 0)[..., ::-1]
    else:
        raise ValueError(f"sample {meta.get('img_id', '?')} has neither img_path nor an input image")
    if img.shape[:2] != (h, w):
        img = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img.astype(np.uint8))


def gt_at_original_size(element: Any, meta: dict) -> Any:
    """Ground truth packed at the pipeline's size (``img_shape``), brought to ``ori_shape`` like predictions."""
    ori = original_shape(meta)
    if hasattr(element, "bboxes"):
        factor = tuple(meta.get("scale_factor") or (1.0, 1.0))
        sx, sy = float(factor[0]), float(factor[-1])
        if (sx, sy) == (1.0, 1.0):
            return element
        out = element.clone()
        out.bboxes = out.bboxes / out.bboxes.new_tensor([sx, sy, sx, sy])
        return out
    data = getattr(element, "data", None)
    if isinstance(data, torch.Tensor) and data.ndim >= 2 and tuple(data.shape[-2:]) != ori:
        out = element.clone()
        out.data = torch.from_numpy(resize_map(data, ori))[None]
        return out
    return element


class GridRenderer:
    """Draw grids of a model's predictions for collated batches (``dict(inputs=[...], data_samples=[...])``).

    Args:
        model: a ``MultiTaskModel`` (or a wrapper of one), in eval mode.
        task_styles: ``{task: dict(classes=..., palette=...)}`` (see :func:`task_styles`).
        drawers: ``{task: drawer name}`` overriding the field-based choice.
        score_thr: detection score threshold. panel_size: long side of every panel in pixels.
    """

    def __init__(
        self,
        model: Any,
        task_styles: dict[str, dict] | None = None,
        drawers: dict[str, str] | None = None,
        score_thr: float = 0.3,
        panel_size: int = 256,
    ) -> None:
        self.model = unwrap(model)
        self.styles = task_styles or {}
        self.overrides = check_overrides(dict(drawers or {}), list(self.model.tasks))
        self.score_thr = score_thr
        self.panel_size = panel_size
        self._drawers: dict[str, list[TaskDrawer]] | None = None

    @classmethod
    def from_config(cls, model: Any, cfg_vis: dict | None, task_styles: dict, **defaults) -> GridRenderer:
        cfg_vis = dict(cfg_vis or {})
        unknown = sorted(set(cfg_vis) - set(VIS_KEYS))
        if unknown:
            raise ValueError(f"visualization: unknown keys {unknown} (allowed: {list(VIS_KEYS)})")
        return cls(model, task_styles, **{**defaults, **cfg_vis})

    def drawers(self, per_head: dict[str, list]) -> dict[str, list[TaskDrawer]]:
        if self._drawers is None:
            heads = {h.name: str(h.task) for h in self.model.graph.heads}
            self._drawers = make_drawers(heads, per_head, self.styles, self.overrides, self.score_thr)
        return self._drawers

    def render(self, data: dict) -> list[SampleGrid]:
        raw_inputs = list(data["inputs"])
        samples, per_head = predict_per_head(self.model, data)
        drawers = self.drawers(per_head)
        grids = []
        for i, sample in enumerate(samples):
            image = display_image(sample, raw_inputs[i] if i < len(raw_inputs) else None)
            panel_img, scale = to_panel(image, self.panel_size)
            meta = sample.metainfo
            grid = SampleGrid(str(meta.get("source", "")), sample_name(meta, i))
            labelled = labelled_tasks(sample)
            for head in self.model.graph.heads:
                pred = per_head[head.name][i]
                for drawer in drawers[head.name]:
                    if drawer.pred_field not in pred:
                        raise DrawerError(
                            f"task {drawer.task!r} (head {head.name!r}) filled no {drawer.pred_field} for "
                            f"{type(drawer).__name__} (it filled {sorted(pred.keys())})"
                        )
                    gt = None
                    if drawer.task in labelled and drawer.gt_field and drawer.gt_field in sample:
                        gt = gt_at_original_size(getattr(sample, drawer.gt_field), meta)
                    out: TaskPanels = drawer.draw(panel_img, getattr(pred, drawer.pred_field), gt, scale)
                    grid.rows.append(
                        TaskRow(drawer.task, head.name, {"input": panel_img, **out.panels}, out.key)
                    )
            grid.image = compose(grid, labelled)
            grids.append(grid)
        return grids


def to_panel(image: np.ndarray, panel_size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` resized so that its long side is ``panel_size``, and the (x, y) factors from its pixels."""
    h, w = image.shape[:2]
    f = panel_size / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    panel = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
    return panel, (size[0] / w, size[1] / h)


def sample_name(meta: dict, index: int) -> str:
    """The file stem of a sample's image (its index when it has no path): the grid's file name."""
    return osp.splitext(osp.basename(str(meta.get("img_path", index))))[0]


def compose(grid: SampleGrid, labelled: tuple[str, ...]) -> np.ndarray:
    """Rows of panels with titles; a missing ground truth becomes a 'not labelled' placeholder."""
    rows = []
    for row in grid.rows:
        ph, pw = row.panels["input"].shape[:2]
        titles = list(row.panels)
        if "ground truth" not in row.panels:
            titles.insert(2, "ground truth")
        panels = [row.panels.get(t, placeholder(ph, pw, f"not labelled for {row.task}")) for t in titles]
        if row.key is not None:
            panels.append(row.key)
        body = hstack(panels, GAP)
        xs = [i * (pw + GAP) + pw / 2 for i in range(len(titles))]
        head_text = row.task if row.head == row.task else f"{row.task} ({row.head})"
        items = [(4.0, head_text, "left")] + [(x, t, "center") for x, t in zip(xs[1:], titles[1:])]
        rows.append(vstack([text_strip(body.shape[1], HEADER_H, items, bold_first=True), body], 0))
    body = vstack(rows, GAP * 2)
    title = f"{grid.source}  {grid.name}   labelled: {', '.join(labelled) or 'nothing'}"
    return vstack([text_strip(body.shape[1], TITLE_H, [(4.0, title, "left")], points=10), body], 0)


def task_styles(dataset: Any) -> dict[str, dict]:
    """``{task: dict(classes=..., palette=...)}`` from a (multi-source) dataset's metainfo, or from a list of
    sources (e.g. built with ``lazy_init=True``: their metainfo needs no data)."""
    sources = dataset if isinstance(dataset, (list, tuple)) else getattr(dataset, "datasets", [dataset])
    meta = {} if isinstance(dataset, (list, tuple)) else getattr(dataset, "metainfo", {}) or {}
    styles = {t: dict(m) for t, m in (meta.get("task_meta") or {}).items()}
    for source in sources:
        smeta = getattr(source, "metainfo", {}) or {}
        for task, kind in (getattr(source, "tasks", None) or {}).items():
            style = styles.setdefault(task, {})
            keys = ("palette",) if kind == "instances" else ("seg_palette", "palette")
            if "classes" not in style:
                name_key = "classes" if kind == "instances" else "seg_classes"
                if smeta.get(name_key):
                    style["classes"] = tuple(smeta[name_key])
            n = len(style.get("classes", ()))
            for key in keys:
                pal = smeta.get(key)
                if "palette" not in style and pal is not None and len(pal) == n:
                    style["palette"] = [tuple(int(c) for c in p) for p in pal]
    return styles
