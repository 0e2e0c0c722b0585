"""Procedural multi-task scenes: one image with its depth, class and instance maps, boxes and difficulty.

A scene is a pinhole view (focal ``0.9 * width`` px, camera ``CAMERA_HEIGHT`` m above a flat floor) of a
checkered floor whose depth grows towards the horizon row, a back wall at ``WALL_DEPTH`` metres, and objects of
:data:`SYNTHETIC_CLASSES` standing on the floor at random depths: their pixel size is ``focal * size / depth``
and their base sits on the floor row of their depth. Shapes (not colours, which are random per instance) tell the
classes apart. Objects are painted far to near (painter's algorithm): the image, the depth map, the class map
and the instance map all show the visible surface. Boxes are the tight boxes of each instance's visible pixels;
fully occluded instances are dropped; instances less than 30% visible (or under ``MIN_VISIBLE_PIXELS``) are
``difficult``.

Everything is numpy on small crops; a scene is a function of its random generator only.
:mod:`multitask_vision.datasets.synthetic` writes scenes to disk in the VOC and NYU layouts.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

SYNTHETIC_CLASSES = ("box", "ball", "cone", "ring")
SYNTHETIC_SEG_CLASSES = ("background",) + SYNTHETIC_CLASSES

WALL_DEPTH = 10.0  # metres
CAMERA_HEIGHT = 1.2  # metres above the floor
FOCAL = 0.9  # focal length in image widths
OBJECT_DEPTH = (1.5, 8.5)  # metres, where an object touches the floor
# object height range (metres) per class; width = height * aspect
SIZE_RANGE = np.array([(0.5, 1.0), (0.4, 0.8), (0.6, 1.1), (0.5, 1.0)], dtype=np.float64)
ASPECT_RANGE = np.array([(0.7, 1.5), (1.0, 1.0), (0.6, 0.9), (1.0, 1.0)], dtype=np.float64)
DIFFICULT_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_PIXELS = 12


@dataclass
class SceneObject:
    """One visible instance. ``bbox`` = 0-based inclusive pixel box ``(x0, y0, x1, y1)`` of its visible pixels."""

    label: int
    depth: float  # metres, where it stands on the floor
    bbox: tuple[int, int, int, int]
    height_px: float  # projected height of the whole object
    visible_pixels: int
    visible_fraction: float  # of its in-image area
    truncated: bool
    difficult: bool

    @property
    def name(self) -> str:
        return SYNTHETIC_CLASSES[self.label]


@dataclass
class SyntheticScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 metres, every pixel valid
    seg: np.ndarray  # (H, W) uint8: 0 background, i + 1 = SYNTHETIC_CLASSES[i]
    instances: np.ndarray  # (H, W) int32: 0 none, k + 1 = objects[k]
    objects: list[SceneObject] = field(default_factory=list)
    wall_depth: float = WALL_DEPTH


# ---- shapes: (u, v) -> mask, shade, depth bulge (fraction of the object's height, towards the camera) ----------
# u in [-1, 1] across the object's width, v in [0, 1] from its base (0) to its top (1); u is (1, w), v is (h, 1).
Shape = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def _box(u, v):
    mask = (np.abs(u) <= 1) & (v >= 0) & (v <= 1)
    shade = 0.65 + 0.25 * v + 0.25 * (v > 0.82) - 0.25 * (u > 0.55)  # lit top face, dark right face
    return mask, shade, None


def _ball(u, v):
    r2 = u * u + ((v - 0.5) * 2) ** 2
    mask = r2 <= 1
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    lambert = np.clip(-0.45 * u + 0.55 * (v - 0.5) * 2 + 0.7 * nz, 0, 1)
    return mask, 0.3 + 0.75 * lambert, 0.5 * nz  # a sphere of radius height / 2


def _cone(u, v):
    half = 1 - v
    mask = (v >= 0) & (v <= 1) & (np.abs(u) <= half)
    across = np.clip(u / np.maximum(half, 1e-3), -1, 1)
    return mask, 0.5 + 0.45 * (1 - (across + 1) / 2) + 0.1 * v, None


def _ring(u, v):
    r = np.sqrt(u * u + ((v - 0.5) * 2) ** 2)
    mask = (r <= 1) & (r >= 0.55)
    t = np.clip((r - 0.775) / 0.225, -1, 1)
    return mask, 0.45 + 0.6 * np.sqrt(1 - t * t), None


SHAPES: tuple[Shape, ...] = (_box, _ball, _cone, _ring)  # indexed like SYNTHETIC_CLASSES


def _hsv_colours(rng: np.random.Generator, n: int, s=(0.45, 1.0), v=(0.55, 1.0)) -> np.ndarray:
    hsv = rng.random((n, 3))
    return np.array(
        [colorsys.hsv_to_rgb(h, s[0] + (s[1] - s[0]) * ss, v[0] + (v[1] - v[0]) * vv) for h, ss, vv in hsv],
        dtype=np.float32,
    ).reshape(n, 3)


def render_scene(
    rng: np.random.Generator | int | Sequence[int],
    image_size: tuple[int, int] = (128, 128),
    *,
    min_objects: int = 1,
    max_objects: int = 6,
) -> SyntheticScene:
    """Render one scene. ``image_size`` is ``(height, width)``; ``rng`` a Generator or a seed.

    One pass in one function (background, objects far to near, their visibility, sensor noise) on purpose: the
    order of the random draws fixes every file a seed writes, and it stays readable top to bottom here.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    h, w = (int(s) for s in image_size)
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    f = FOCAL * w
    horizon = rng.uniform(0.3, 0.45) * h
    ys = np.arange(h, dtype=np.float32) + 0.5  # pixel centres
    xs = np.arange(w, dtype=np.float32) + 0.5

    # background: floor rows (depth f * cam_h / rows-below-horizon) up to the wall, the wall above
    below = ys - horizon
    floor_z = np.where(below > 0, f * CAMERA_HEIGHT / np.maximum(below, 1e-6), np.inf).astype(np.float32)
    is_floor = floor_z < WALL_DEPTH  # (H,)
    depth = np.repeat(np.minimum(floor_z, WALL_DEPTH)[:, None], w, axis=1)  # (H, W)
    floor_a, floor_b, wall = _hsv_colours(rng, 3, s=(0.05, 0.5), v=(0.35, 0.95))
    tile = rng.uniform(0.5, 1.2)  # metres
    world_x = (xs[None, :] - w / 2) * depth / f
    checker = (np.floor(world_x / tile) + np.floor(depth / tile)).astype(np.int64) & 1  # (H, W)
    floor_rgb = np.where(checker[..., None] == 1, floor_a, floor_b)
    panel = rng.uniform(0.06, 0.2) * w
    wall_rgb = wall * (0.85 + 0.15 * (np.floor(xs / panel) % 2))[None, :, None]  # (1, W, 3)
    img = (
        np.where(is_floor[:, None, None], floor_rgb, wall_rgb) * (1.0 - 0.45 * depth / WALL_DEPTH)[..., None]
    )

    # objects, painted far to near
    n = int(rng.integers(min_objects, max_objects + 1))
    labels = rng.integers(0, len(SYNTHETIC_CLASSES), n)
    zs = rng.uniform(*OBJECT_DEPTH, n)
    sizes = SIZE_RANGE[labels, 0] + (SIZE_RANGE[labels, 1] - SIZE_RANGE[labels, 0]) * rng.random(n)
    aspects = ASPECT_RANGE[labels, 0] + (ASPECT_RANGE[labels, 1] - ASPECT_RANGE[labels, 0]) * rng.random(n)
    centres = rng.uniform(0, w, n)
    colours = _hsv_colours(rng, n)
    inst = np.zeros((h, w), np.int32)
    order = np.argsort(-zs, kind="stable")
    crops: dict[int, tuple[int, int, int, int]] = {}
    full_area = np.zeros(n, np.int64)
    truncated = np.zeros(n, bool)
    heights_px = f * sizes / zs
    for k in order:
        hp = heights_px[k]
        wp = hp * aspects[k]
        base = horizon + f * CAMERA_HEIGHT / zs[k]
        top, left, right = base - hp, centres[k] - wp / 2, centres[k] + wp / 2
        r0, r1 = max(0, int(np.floor(top))), min(h, int(np.ceil(base)))
        c0, c1 = max(0, int(np.floor(left))), min(w, int(np.ceil(right)))
        if r0 >= r1 or c0 >= c1:
            continue
        u = (xs[None, c0:c1] - centres[k]) / (wp / 2)
        v = (base - ys[r0:r1, None]) / hp
        mask, shade, bulge = SHAPES[labels[k]](u, v)
        mask = np.broadcast_to(mask, (r1 - r0, c1 - c0))
        full_area[k] = int(mask.sum())
        if not full_area[k]:
            continue
        truncated[k] = top < 0 or left < 0 or right > w or base > h
        shade = np.broadcast_to(shade, mask.shape)[mask]
        img[r0:r1, c0:c1][mask] = colours[k] * shade[:, None]
        obj_depth = zs[k] if bulge is None else zs[k] - sizes[k] * np.broadcast_to(bulge, mask.shape)[mask]
        depth[r0:r1, c0:c1][mask] = obj_depth
        inst[r0:r1, c0:c1][mask] = k + 1
        crops[int(k)] = (r0, r1, c0, c1)

    visible = np.bincount(inst.ravel(), minlength=n + 1)[1:]
    lut = np.zeros(n + 1, np.int32)
    objects = []
    for k in order:
        if visible[k] == 0:
            continue  # fully occluded (or outside the image)
        r0, r1, c0, c1 = crops[int(k)]
        sub = inst[r0:r1, c0:c1] == k + 1
        rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
        frac = float(visible[k] / full_area[k])
        objects.append(
            SceneObject(
                label=int(labels[k]),
                depth=float(zs[k]),
                bbox=(c0 + int(cols[0]), r0 + int(rows[0]), c0 + int(cols[-1]), r0 + int(rows[-1])),
                height_px=float(heights_px[k]),
                visible_pixels=int(visible[k]),
                visible_fraction=frac,
                truncated=bool(truncated[k]),
                difficult=bool(frac < DIFFICULT_VISIBLE_FRACTION or visible[k] < MIN_VISIBLE_PIXELS),
            )
        )
        lut[k + 1] = len(objects)
    inst = lut[inst]
    class_lut = np.array([0] + [o.label + 1 for o in objects], np.uint8)

    img += rng.standard_normal(img.shape, dtype=np.float32) * 0.012
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return SyntheticScene(
        image=image, depth=depth.astype(np.float32), seg=class_lut[inst], instances=inst, objects=objects
    )


def instance_boundary(instances: np.ndarray) -> np.ndarray:
    """Pixels of an instance with a 4-neighbour of another instance or background (the object-side edge)."""
    edge = np.zeros(instances.shape, bool)
    dx = instances[:, 1:] != instances[:, :-1]
    dy = instances[1:] != instances[:-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    return edge & (instances > 0)


def kinect_holes(rng: np.random.Generator, scene: SyntheticScene) -> np.ndarray:
    """A mask of invalid depth like a Kinect's: shadows left of depth edges, a few blobs, sparse dropouts."""
    h, w = scene.depth.shape
    d = scene.depth
    holes = np.zeros((h, w), bool)
    holes[:, :-1] = d[:, 1:] < d[:, :-1] - 0.25  # the far side just left of a nearer surface
    holes[:, :-2] |= holes[:, 1:-1] & (rng.random((h, w - 2)) < 0.5)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.5, 0.05 * h + 2), rng.uniform(1.5, 0.05 * w + 2)
        yy, xx = np.ogrid[:h, :w]
        holes |= ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1
    holes |= rng.random((h, w)) < 0.003
    return holes
