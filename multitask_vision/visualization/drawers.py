"""Task drawers: turn one task's prediction and ground truth into panels of a grid.

A drawer is keyed by the KIND of prediction, not by task name: it declares the data-sample fields it draws
(``fields = (prediction field, ground-truth field)``), and a head is drawn by the drawer of the field its
``predict`` fills. A new kind of task registers its own::

    @DRAWERS.register_module()
    class NormalsDrawer(TaskDrawer):
        fields = ("pred_normals", "gt_normals")

        def draw(self, image, pred, gt, scale) -> TaskPanels: ...

Drawing uses mmengine's ``Visualizer`` primitives (``draw_bboxes``, ``draw_texts``, ``draw_binary_masks``) on
panels already upscaled to ``panel_size``, so labels stay readable on small images; depth uses a matplotlib
colormap with one scale for prediction and ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from multitask_vision.registry import DRAWERS
from multitask_vision.visualization.canvas import (
    colorbar,
    draw_on,
    font_px,
    hstack,
    legend,
    readable_text_color,
    text_width,
)

IGNORE_COLOR = (255, 255, 255)  # segmentation ignore index (255) in ground truth
INVALID_COLOR = (150, 150, 150)  # depth pixels without ground truth


@dataclass
class TaskPanels:
    """What a drawer returns: panels (title -> RGB image of the input panel's size) and a key column."""

    panels: dict[str, np.ndarray] = field(default_factory=dict)
    key: np.ndarray | None = None  # legend / colour scale, same height as the panels


def to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def resize_map(data: Any, shape: tuple[int, int]) -> np.ndarray:
    """A (1, H, W) / (H, W) label or depth map resized to ``shape`` (nearest: no invented values)."""
    arr = to_numpy(data)
    arr = arr[0] if arr.ndim == 3 else arr
    if arr.shape != tuple(shape):
        arr = cv2.resize(arr.astype(np.float32), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(
            arr.dtype
        )
    return arr


class TaskDrawer:
    """Base drawer. Subclasses set ``fields`` and implement :meth:`draw`.

    Args:
        task: the task's name (for titles and messages).
        classes: class names of the task (detection, segmentation), from the dataset's ``task_meta``.
        palette: one RGB colour per class.
        score_thr: predictions scored below are not drawn (drawers with scores).
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        task: str,
        classes: tuple[str, ...] | None = None,
        palette: list[tuple[int, int, int]] | None = None,
        score_thr: float = 0.3,
    ) -> None:
        self.task = task
        self.classes = tuple(classes) if classes else None
        self.palette = [tuple(int(c) for c in p) for p in palette] if palette else None
        self.score_thr = score_thr

    @property
    def pred_field(self) -> str:
        return self.fields[0]

    @property
    def gt_field(self) -> str | None:
        return self.fields[1] if len(self.fields) > 1 else None

    def class_name(self, label: int) -> str:
        return self.classes[label] if self.classes and 0 <= label < len(self.classes) else f"class {label}"

    def color(self, label: int) -> tuple[int, int, int]:
        if self.palette and 0 <= label < len(self.palette):
            return self.palette[label]  # type: ignore[return-value]
        rng = np.random.default_rng(label + 17)
        return tuple(int(c) for c in rng.integers(64, 256, 3))  # type: ignore[return-value]

    def draw(self, image: np.ndarray, pred: Any, gt: Any | None, scale: tuple[float, float]) -> TaskPanels:
        """Panels for ``pred`` (and ``gt`` when the sample is labelled for the task, else ``None``).

        ``image`` is the RGB input at panel size; ``scale`` = (x, y) factors from original pixels to it.
        """
        raise NotImplementedError

    def draw_ground_truth(self, image: np.ndarray, gt: Any, scale: tuple[float, float]) -> TaskPanels:
        """The ground truth alone, in a ``'ground truth'`` panel (browsing a dataset without a model). By default
        it is drawn as :meth:`draw` draws a prediction; drawers whose predictions carry more (scores) override it.
        """
        out = self.draw(image, gt, None, scale)
        return TaskPanels({"ground truth": out.panels["prediction"]}, out.key)


@DRAWERS.register_module()
class DetectionDrawer(TaskDrawer):
    """Boxes with class names (and scores for predictions at or above ``score_thr``)."""

    fields = ("pred_instances", "gt_instances")
    font_size = 8

    def draw(self, image: np.ndarray, pred: Any, gt: Any | None, scale: tuple[float, float]) -> TaskPanels:
        out = TaskPanels()
        keep = to_numpy(pred.scores) >= self.score_thr if "scores" in pred else None
        out.panels["prediction"] = self._boxes(image, pred, keep, scale)
        shown = len(pred) if keep is None else int(keep.sum())
        present = set(to_numpy(pred.labels)[keep] if keep is not None else to_numpy(pred.labels))
        note = [f"{shown} of {len(pred)} predictions", f"score >= {self.score_thr:.2f}"]
        if gt is not None:
            out.panels["ground truth"] = self._boxes(image, gt, None, scale)
            present |= set(to_numpy(gt.labels))
            note.append(f"{len(gt)} ground-truth box{'es' if len(gt) != 1 else ''}")
        entries = [(self.class_name(int(c)), self.color(int(c))) for c in sorted(present)]
        out.key = legend(entries, image.shape[0], notes=note)
        return out

    def draw_ground_truth(self, image: np.ndarray, gt: Any, scale: tuple[float, float]) -> TaskPanels:
        present = sorted({int(c) for c in to_numpy(gt.labels)})
        entries = [(self.class_name(c), self.color(c)) for c in present]
        note = [f"{len(gt)} ground-truth box{'es' if len(gt) != 1 else ''}"]
        return TaskPanels(
            {"ground truth": self._boxes(image, gt, None, scale)}, legend(entries, image.shape[0], notes=note)
        )

    def _boxes(self, image: np.ndarray, inst: Any, keep: np.ndarray | None, scale) -> np.ndarray:
        boxes = to_numpy(inst.bboxes).reshape(-1, 4).astype(np.float64)
        labels = to_numpy(inst.labels).astype(int)
        scores = to_numpy(inst.scores) if "scores" in inst else None
        order = np.arange(len(boxes))
        if keep is not None:
            order = order[keep]
        if scores is not None:  # most confident first: its label gets the best spot
            order = order[np.argsort(-scores[order], kind="stable")]
        h, w = image.shape[:2]
        boxes = boxes * np.array([scale[0], scale[1], scale[0], scale[1]])
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h - 1)
        if not len(order):
            return image.copy()
        fpx = font_px(self.font_size)
        placed: list[tuple[float, float, float, float]] = []
        texts, positions, colors, backgrounds = [], [], [], []
        for i in order:
            text = self.class_name(int(labels[i]))
            if scores is not None:
                text += f" {scores[i]:.2f}"
            tw, th = text_width(text, self.font_size), fpx + 4
            rect = _place_label(boxes[i], tw, th, w, h, placed)
            if rect is None:
                continue
            placed.append(rect)
            color = self.color(int(labels[i]))
            texts.append(text)
            positions.append((rect[0] + 2, rect[1] + 2))
            colors.append(readable_text_color(color))
            backgrounds.append(dict(facecolor=np.array(color) / 255, alpha=0.85, pad=1.5, edgecolor="none"))

        def paint(v):  # a dark outline under each coloured box keeps it visible on any background
            v.draw_bboxes(boxes[order], edge_colors="black", line_widths=2.5, alpha=0.7)
            v.draw_bboxes(
                boxes[order],
                edge_colors=[self.color(int(labels[i])) for i in order],
                line_widths=1.5,
                alpha=1.0,
            )
            if texts:
                v.draw_texts(
                    texts, np.array(positions), font_sizes=self.font_size, colors=colors, bboxes=backgrounds
                )

        return draw_on(image, paint)


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _place_label(box, tw: float, th: float, w: int, h: int, placed: list) -> tuple | None:
    """A label spot next to ``box`` that overlaps no placed label: above it, inside its top, below it, inside
    its bottom (left, then right aligned); ``None`` when all are taken (the box's colour still says its class)."""
    x1, y1, x2, y2 = (float(c) for c in box)
    for y in (y1 - th, y1 + 1, y2 + 1, y2 - th - 1):
        for x in (x1, x2 - tw):
            x, yy = min(max(x, 0.0), w - tw), min(max(y, 0.0), h - th)
            rect = (x, yy, x + tw, yy + th)
            if not any(_overlap(rect, r) > 0 for r in placed):
                return rect
    return None


@DRAWERS.register_module()
class SegmentationDrawer(TaskDrawer):
    """A palette overlay of the class map, and a legend of the classes present (255 = ignore)."""

    fields = ("pred_sem_seg", "gt_sem_seg")
    alpha = 0.7
    ignore_index = 255

    def draw(self, image: np.ndarray, pred: Any, gt: Any | None, scale: tuple[float, float]) -> TaskPanels:
        out = TaskPanels()
        shape = image.shape[:2]
        maps = {"prediction": resize_map(pred.data, shape)}
        if gt is not None:
            maps["ground truth"] = resize_map(gt.data, shape)
        present: set[int] = set()
        for title, labels in maps.items():
            out.panels[title] = self._overlay(image, labels)
            present |= {int(v) for v in np.unique(labels)}
        entries = [(self.class_name(c), self.color(c)) for c in sorted(present - {self.ignore_index})]
        if self.ignore_index in present:
            entries.append(("ignore", IGNORE_COLOR))
        out.key = legend(entries, image.shape[0])
        return out

    def _overlay(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        ids = [int(v) for v in np.unique(labels)]
        colors = [IGNORE_COLOR if c == self.ignore_index else self.color(c) for c in ids]
        masks = np.stack([labels == c for c in ids])
        return draw_on(image, lambda v: v.draw_binary_masks(masks, colors=colors, alphas=self.alpha))


@DRAWERS.register_module()
class DepthDrawer(TaskDrawer):
    """Prediction and ground truth on ONE colour scale (metres), and ``|pred - gt|`` on valid pixels with its
    own scale; pixels without ground truth (0) are grey."""

    fields = ("pred_depth_map", "gt_depth_map")
    cmap = "viridis"
    error_cmap = "magma"

    @staticmethod
    def _range(values: list[np.ndarray]) -> tuple[float, float]:
        """The colour scale: 1st to 99th percentile of ``values`` (metres)."""
        both = np.concatenate([v.ravel() for v in values])
        if not both.size:
            return 0.0, 1.0
        lo, hi = float(np.percentile(both, 1)), float(np.percentile(both, 99))
        return lo, max(hi, lo + 1e-3)

    @staticmethod
    def _paint(d: np.ndarray, cmap: Any, lo: float, hi: float, mask: np.ndarray | None = None) -> np.ndarray:
        rgb = (cmap(np.clip((d - lo) / (hi - lo), 0, 1))[..., :3] * 255).astype(np.uint8)
        if mask is not None:
            rgb[~mask] = INVALID_COLOR
        return rgb

    def draw_ground_truth(self, image: np.ndarray, gt: Any, scale: tuple[float, float]) -> TaskPanels:
        from matplotlib import colormaps

        gt_d = resize_map(gt.data, image.shape[:2]).astype(np.float32)
        valid = gt_d > 0
        lo, hi = self._range([gt_d[valid]])
        cmap = colormaps[self.cmap]
        return TaskPanels(
            {"ground truth": self._paint(gt_d, cmap, lo, hi, valid)},
            colorbar(cmap, lo, hi, image.shape[0], "depth (m)"),
        )

    def draw(self, image: np.ndarray, pred: Any, gt: Any | None, scale: tuple[float, float]) -> TaskPanels:
        from matplotlib import colormaps

        out = TaskPanels()
        shape = image.shape[:2]
        pred_d = resize_map(pred.data, shape).astype(np.float32)
        values = [pred_d]
        gt_d = valid = None
        if gt is not None:
            gt_d = resize_map(gt.data, shape).astype(np.float32)
            valid = gt_d > 0
            values.append(gt_d[valid])
        lo, hi = self._range(values)
        cmap = colormaps[self.cmap]
        out.panels["prediction"] = self._paint(pred_d, cmap, lo, hi)
        bars = [colorbar(cmap, lo, hi, shape[0], "depth (m)")]
        if gt_d is not None and valid is not None:
            out.panels["ground truth"] = self._paint(gt_d, cmap, lo, hi, valid)
            err = np.abs(pred_d - gt_d)
            emax = float(np.percentile(err[valid], 99)) if valid.any() else 1.0
            emax = max(emax, 1e-3)
            ecmap = colormaps[self.error_cmap]
            rgb = (ecmap(np.clip(err / emax, 0, 1))[..., :3] * 255).astype(np.uint8)
            rgb[~valid] = INVALID_COLOR
            mae = float(err[valid].mean()) if valid.any() else float("nan")
            note = f"mean {mae:.2f} m"
            out.panels["|pred - gt|"] = draw_on(
                rgb,
                lambda v: v.draw_texts(
                    note,
                    np.array([4.0, 4.0]),
                    font_sizes=8,
                    colors="white",
                    bboxes=dict(facecolor="black", alpha=0.6, pad=1.5, edgecolor="none"),
                ),
            )
            bars.append(colorbar(ecmap, 0.0, emax, shape[0], "|error| (m)"))
        out.key = hstack(bars, gap=0)
        return out
