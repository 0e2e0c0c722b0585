"""Drawing a model's predictions on new images (no ground truth), with the drawers of the grids.

:meth:`PredictionPainter.strip`: one row, the input then one panel per head (with its legend or colour
scale), titled: what ``infer.py`` writes for an image. :meth:`PredictionPainter.mosaic`: the heads' panels
tiled into a frame of the input's own size (for an annotated video of the same frame size).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from multitask_vision.visualization.canvas import blank, hstack, text_strip, vstack
from multitask_vision.visualization.drawers import TaskDrawer
from multitask_vision.visualization.grid import (
    GAP,
    HEADER_H,
    TITLE_H,
    DrawerError,
    check_overrides,
    make_drawers,
)


class PredictionPainter:
    """Draw the predictions of ``heads`` (``{head name: task}``), each head by the drawer of the field it
    predicts (or the config's ``visualization.drawers`` override of its task), classes and palettes from
    ``styles`` (``task_styles``); boxes below ``score_thr`` are not drawn; ``panel_size``: long side of a panel
    of :meth:`strip`."""

    def __init__(
        self,
        heads: dict[str, str],
        styles: dict[str, dict] | None = None,
        drawers: dict[str, str] | None = None,
        score_thr: float = 0.3,
        panel_size: int = 256,
    ) -> None:
        self.heads = dict(heads)
        self.styles = styles or {}
        self.overrides = check_overrides(dict(drawers or {}), sorted(set(self.heads.values())))
        self.score_thr = score_thr
        self.panel_size = panel_size
        self._drawers: dict[str, list[TaskDrawer]] | None = None

    def drawers(self, samples: dict[str, Any]) -> dict[str, list[TaskDrawer]]:
        if self._drawers is None:
            per_head = {h: [samples[h]] for h in self.heads}
            self._drawers = make_drawers(self.heads, per_head, self.styles, self.overrides, self.score_thr)
        return self._drawers

    def panels(self, image: np.ndarray, samples: dict[str, Any], long_side: int) -> tuple[np.ndarray, list]:
        """The input at ``long_side`` and ``[(title, prediction panel, key)]``, one per head and drawer."""
        image = np.ascontiguousarray(image.astype(np.uint8))
        h, w = image.shape[:2]
        f = long_side / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        panel_img = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
        scale = (size[0] / w, size[1] / h)
        out = []
        for head, drawers in self.drawers(samples).items():
            sample = samples[head]
            for drawer in drawers:
                if drawer.pred_field not in sample:
                    raise DrawerError(
                        f"task {drawer.task!r} (head {head!r}) filled no {drawer.pred_field} for "
                        f"{type(drawer).__name__} (it filled {sorted(sample.keys())})"
                    )
                drawn = drawer.draw(panel_img, getattr(sample, drawer.pred_field), None, scale)
                title = drawer.task if head == drawer.task else f"{drawer.task} ({head})"
                out.append((title, drawn.panels["prediction"], drawn.key))
        return panel_img, out

    def strip(self, image: np.ndarray, samples: dict[str, Any], title: str = "") -> np.ndarray:
        """``image`` (RGB) | each head's prediction | its key, with a header; RGB."""
        panel_img, drawn = self.panels(image, samples, self.panel_size)
        parts, items = [panel_img], [(panel_img.shape[1] / 2, "input", "center")]
        x = panel_img.shape[1] + GAP  # left edge of the next panel
        for name, panel, key in drawn:
            parts.append(panel)
            items.append((x + panel.shape[1] / 2, name, "center"))
            x += panel.shape[1] + GAP
            if key is not None:
                parts.append(key)
                x += key.shape[1] + GAP
        body = hstack(parts, GAP)
        header = text_strip(body.shape[1], HEADER_H, items)
        rows = [header, body]
        if title:
            rows.insert(0, text_strip(body.shape[1], TITLE_H, [(4.0, title, "left")], points=10))
        return vstack(rows, 0)

    def mosaic(self, image: np.ndarray, samples: dict[str, Any]) -> np.ndarray:
        """The heads' prediction panels (and the input, when a cell is free) tiled in a square grid into a
        frame of ``image``'s own size; RGB."""
        h, w = image.shape[:2]
        n = sum(len(d) for d in self.drawers(samples).values())
        g = max(1, math.ceil(math.sqrt(n)))
        ch, cw = h // g, w // g
        # drawn at least 128 px (legends and colour scales need room), then scaled to the cell
        panel_img, drawn = self.panels(image, samples, max(ch, cw, 128))
        cells = [(t, p) for t, p, _ in drawn]
        if g * g > n:
            cells.insert(0, ("input", panel_img))
        frame = blank(h, w, (0, 0, 0))
        for i, (title, panel) in enumerate(cells):
            r, c = divmod(i, g)
            cell = cv2.resize(panel, (max(cw, 1), max(ch, 1)), interpolation=cv2.INTER_AREA)
            _label(cell, title)
            frame[r * ch : r * ch + cell.shape[0], c * cw : c * cw + cell.shape[1]] = cell
        return frame


def _label(cell: np.ndarray, text: str) -> None:
    """A small title at the top left of a mosaic cell, white on a dark box (in place)."""
    scale = max(0.3, min(cell.shape[:2]) / 400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(cell, (0, 0), (tw + 6, th + base + 6), (0, 0, 0), -1)
    cv2.putText(cell, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
