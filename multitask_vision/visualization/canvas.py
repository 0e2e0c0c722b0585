"""Drawing helpers shared by drawers and grids, on one mmengine ``Visualizer`` used as a canvas.

The canvas is constructed directly (not with ``Visualizer.get_instance``), so it never becomes mmengine's
"current" visualizer and never replaces the Runner's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from mmengine.visualization import Visualizer

DPI = 100.0  # matplotlib's default figure dpi, which the canvas uses
WHITE = (255, 255, 255)
_CANVAS: Visualizer | None = None


def canvas() -> Visualizer:
    global _CANVAS
    if _CANVAS is None:
        _CANVAS = Visualizer(name="multitask_vision.canvas")
    return _CANVAS


def font_px(points: float) -> float:
    return points * DPI / 72.0


def text_width(text: str, points: float) -> float:
    """A generous estimate of the width of ``text`` in pixels (sans-serif averages ~0.6 em per character)."""
    return 0.62 * font_px(points) * len(text) + 4


def readable_text_color(background: Sequence[int]) -> str:
    r, g, b = (c / 255 for c in background[:3])
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def draw_on(image: np.ndarray, paint: Callable[[Visualizer], object]) -> np.ndarray:
    """``paint(visualizer)`` over a copy of ``image`` (RGB uint8); returns the drawn RGB image, same size."""
    v = canvas()
    v.set_image(np.ascontiguousarray(image))
    paint(v)
    return v.get_image()


def blank(height: int, width: int, color=WHITE) -> np.ndarray:
    out = np.empty((height, width, 3), np.uint8)
    out[...] = color
    return out


def hstack(images: Sequence[np.ndarray], gap: int = 4, color=WHITE) -> np.ndarray:
    """Images side by side, top-aligned, ``gap`` pixels apart, padded to the tallest."""
    h = max(im.shape[0] for im in images)
    parts: list[np.ndarray] = []
    for i, im in enumerate(images):
        if i and gap:
            parts.append(blank(h, gap, color))
        parts.append(
            np.concatenate([im, blank(h - im.shape[0], im.shape[1], color)]) if im.shape[0] < h else im
        )
    return np.concatenate(parts, axis=1)


def vstack(images: Sequence[np.ndarray], gap: int = 4, color=WHITE) -> np.ndarray:
    """Images one above the other, left-aligned, padded to the widest."""
    w = max(im.shape[1] for im in images)
    parts: list[np.ndarray] = []
    for i, im in enumerate(images):
        if i and gap:
            parts.append(blank(gap, w, color))
        pad = w - im.shape[1]
        parts.append(np.concatenate([im, blank(im.shape[0], pad, color)], axis=1) if pad else im)
    return np.concatenate(parts, axis=0)


def text_strip(
    width: int, height: int, items: Sequence[tuple[float, str, str]], points: float = 9, bold_first=False
) -> np.ndarray:
    """A white strip with texts: ``items`` = (x, text, horizontal alignment), vertically centred."""
    items = [it for it in items if it[1]]
    if not items:
        return blank(height, width)

    from matplotlib.font_manager import FontProperties

    def paint(v):
        v.draw_texts(
            [t for _, t, _ in items],
            np.array([[x, height / 2] for x, _, _ in items], dtype=float),
            font_sizes=points,
            colors="black",
            vertical_alignments="center",
            horizontal_alignments=[a for _, _, a in items],
            font_properties=[
                FontProperties(weight="bold" if bold_first and not i else "normal", size=points)
                for i in range(len(items))
            ],
        )

    return draw_on(blank(height, width), paint)


def placeholder(height: int, width: int, text: str) -> np.ndarray:
    """A light grey panel saying why it is empty (e.g. the sample is not labelled for the task)."""
    return draw_on(
        blank(height, width, (236, 236, 236)),
        lambda v: v.draw_texts(
            text,
            np.array([width / 2, height / 2]),
            font_sizes=9,
            colors=(110, 110, 110),
            vertical_alignments="center",
            horizontal_alignments="center",
        ),
    )


def legend(
    entries: Sequence[tuple[str, Sequence[int]]], height: int, notes: Sequence[str] = (), points: float = 8
) -> np.ndarray:
    """Colour swatches with names (several columns when they do not fit ``height``), then ``notes``."""
    line = font_px(points) + 6
    note_h = len(notes) * line + (4 if notes else 0)
    per_col = max(1, int((height - 8 - note_h) // line))
    cols = [entries[i : i + per_col] for i in range(0, len(entries), per_col)] or [[]]
    col_w = [max([text_width(n, points) + 22 for n, _ in col] + [60]) for col in cols]
    width = int(max(sum(col_w), max([text_width(n, points) for n in notes] + [0]) + 8))

    def paint(v):
        x0 = 4.0
        for col, cw in zip(cols, col_w):
            if col:
                ys = 6 + line * np.arange(len(col))
                boxes = np.array([[x0, y, x0 + 12, y + 12] for y in ys])
                v.draw_bboxes(
                    boxes, edge_colors="black", face_colors=[tuple(c) for _, c in col], line_widths=1
                )
                v.draw_texts(
                    [n for n, _ in col],
                    np.array([[x0 + 17, y + 6] for y in ys]),
                    font_sizes=points,
                    colors="black",
                    vertical_alignments="center",
                )
            x0 += cw
        if notes:
            ys = height - note_h + 4 + line * np.arange(len(notes))
            v.draw_texts(
                list(notes), np.array([[4.0, y] for y in ys]), font_sizes=points, colors=(80, 80, 80)
            )

    return draw_on(blank(height, width), paint)


def colorbar(cmap, vmin: float, vmax: float, height: int, title: str, points: float = 8) -> np.ndarray:
    """A vertical colour scale from ``vmin`` (bottom) to ``vmax`` (top) with 5 ticks and a title."""
    top, bottom, x0, bar_w = 22, 8, 8, 14
    bar_h = max(height - top - bottom, 10)
    grad = np.linspace(1, 0, bar_h)[:, None].repeat(bar_w, 1)
    width = int(max(text_width(title, points) + 8, x0 + bar_w + 6 + text_width(f"{vmax:.2f}", points) + 4))
    img = blank(height, width)
    img[top : top + bar_h, x0 : x0 + bar_w] = (cmap(grad)[..., :3] * 255).astype(np.uint8)
    ticks = np.linspace(vmin, vmax, 5)
    ys = top + (1 - (ticks - vmin) / max(vmax - vmin, 1e-9)) * (bar_h - 1)

    def paint(v):
        v.draw_bboxes(np.array([x0, top, x0 + bar_w, top + bar_h]), edge_colors="black", line_widths=1)
        v.draw_texts(title, np.array([4.0, 4.0]), font_sizes=points, colors="black")
        v.draw_texts(
            [f"{t:.2f}" for t in ticks],
            np.array([[x0 + bar_w + 4, y] for y in ys]),
            font_sizes=points,
            colors="black",
            vertical_alignments="center",
        )

    return draw_on(img, paint)
