"""Task-aware transforms: image, boxes, seg map and depth map stay consistent through resize/flip/crop/colour."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from multitask_vision.datasets.synthetic_scene import render_scene
from multitask_vision.datasets.transforms import (
    LoadMultiTaskAnnotations,
    MultiTaskPhotoMetricDistortion,
    MultiTaskRandomCrop,
    MultiTaskRandomFlip,
    MultiTaskResize,
)
from multitask_vision.registry import TRANSFORMS
from multitask_vision.utils.errors import DataError

SIZE = (48, 64)  # (height, width)


def _sample(seed: int) -> tuple[dict, list[set[float]]]:
    """Pipeline results for a synthetic scene, plus each instance's set of depth values.

    Boxes are the continuous boxes of the instances' pixels (pixel ``c`` covers ``[c, c + 1)``), so flips and
    crops keep them exact. ``gt_masks`` (one per box, mmdet keeps them aligned with the boxes) and
    ``gt_instances_ids`` (filtered by mmdet's crop with the boxes) let the checks follow every instance.
    """
    scene = render_scene(seed, SIZE, min_objects=2, max_objects=5)
    n = len(scene.objects)
    masks = np.stack([scene.instances == k + 1 for k in range(n)]).astype(np.uint8)
    boxes = np.array(
        [[o.bbox[0], o.bbox[1], o.bbox[2] + 1, o.bbox[3] + 1] for o in scene.objects], np.float32
    )
    results = dict(
        img=scene.image.copy(),
        img_shape=SIZE,
        ori_shape=SIZE,
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.array([o.label for o in scene.objects], np.int64),
        gt_ignore_flags=np.zeros(n, bool),
        gt_instances_ids=np.arange(n),
        gt_masks=BitmapMasks(masks, *SIZE),
        gt_seg_map=scene.seg.copy(),
        gt_depth_map=scene.depth.copy(),
    )
    depth_sets = [set(scene.depth[masks[k] > 0].tolist()) for k in range(n)]
    return results, depth_sets


def _check(results: dict, depth_sets: list[set[float]], tol: tuple[float, float], cropped: bool) -> None:
    h, w = results["img"].shape[:2]
    assert tuple(results["img_shape"][:2]) == (h, w)
    assert results["gt_seg_map"].shape == (h, w)
    assert results["gt_depth_map"].shape == (h, w)
    masks = results["gt_masks"].masks
    boxes = results["gt_bboxes"].numpy()
    n = len(boxes)
    assert masks.shape == (n, h, w)
    for key in ("gt_bboxes_labels", "gt_ignore_flags", "gt_instances_ids"):
        assert len(results[key]) == n, key
    tol_x, tol_y = tol
    for k in range(n):
        x1, y1, x2, y2 = boxes[k]
        label, inst = results["gt_bboxes_labels"][k], results["gt_instances_ids"][k]
        rows, cols = np.nonzero(masks[k])
        if rows.size == 0:
            # mmdet keeps a clipped box that overlaps the crop even where the (non-convex) object has no pixel:
            # only possible for a box cut by the crop border
            assert cropped and (x1 <= 0 or y1 <= 0 or x2 >= w or y2 >= h), (k, boxes[k])
            continue
        # the box encloses the instance's pixels (tolerance: nearest-resize rounding)
        span = (k, boxes[k], cols.min(), cols.max(), rows.min(), rows.max())
        assert x1 - tol_x <= cols.min() and cols.max() + 1 <= x2 + tol_x, span
        assert y1 - tol_y <= rows.min() and rows.max() + 1 <= y2 + tol_y, span
        # the seg map shows the instance's class on its pixels (so class pixels exist inside its box)
        assert (results["gt_seg_map"][rows, cols] == label + 1).all()
        # the depth map still shows the instance's own depths there (nearest resize copies values exactly)
        assert set(results["gt_depth_map"][rows, cols].tolist()) <= depth_sets[inst]


def _run_chain(seed: int, steps: list) -> None:
    results, depth_sets = _sample(seed)
    tol = (0.0, 0.0)
    cropped = False
    _check(results, depth_sets, tol, cropped)
    for step in steps:
        before = copy.deepcopy(results)
        results = step(results)
        assert results is not None, f"{step!r} dropped the sample"
        if isinstance(step, MultiTaskResize):
            sx, sy = (
                results["img_shape"][1] / before["img_shape"][1],
                results["img_shape"][0] / before["img_shape"][0],
            )
            tol = (tol[0] * sx + 1.0, tol[1] * sy + 1.0)
        cropped |= isinstance(step, MultiTaskRandomCrop)
        if isinstance(step, MultiTaskPhotoMetricDistortion):
            for key in ("gt_seg_map", "gt_depth_map", "gt_bboxes_labels", "gt_instances_ids"):
                np.testing.assert_array_equal(results[key], before[key])
            np.testing.assert_array_equal(results["gt_bboxes"].numpy(), before["gt_bboxes"].numpy())
            np.testing.assert_array_equal(results["gt_masks"].masks, before["gt_masks"].masks)
            assert results["img"].shape == before["img"].shape
        _check(results, depth_sets, tol, cropped)


@pytest.mark.parametrize("seed", range(6))
def test_chains_keep_tasks_consistent(seed):
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # mmdet's transforms draw from numpy's global generator
    scale = (int(rng.integers(40, 120)), int(rng.integers(30, 100)))  # (w, h)
    crop = (int(rng.integers(16, 48)), int(rng.integers(16, 40)))  # (w, h)
    steps = [
        MultiTaskResize(scale=scale, keep_ratio=bool(seed % 2)),
        MultiTaskRandomFlip(prob=1.0, direction="horizontal"),
        MultiTaskRandomCrop(crop_size=crop, allow_negative_crop=True),
        MultiTaskRandomFlip(prob=1.0, direction="vertical"),
        MultiTaskPhotoMetricDistortion(),
        MultiTaskResize(scale=(scale[1], scale[0]), keep_ratio=not seed % 2),
        MultiTaskRandomCrop(crop_size=(0.7, 0.8), crop_type="relative", allow_negative_crop=True),
    ]
    order = rng.permutation(len(steps)) if seed >= 3 else np.arange(len(steps))
    _run_chain(seed, [steps[i] for i in order])


def test_crop_window_is_the_same_for_image_seg_and_depth():
    """After a resize and a flip (a prior homography), the depth crop must use the image's window."""
    np.random.seed(0)
    h, w = 40, 60
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)  # pixel = (row, col, 0)
    results = dict(
        img=img,
        img_shape=(h, w),
        ori_shape=(h, w),
        gt_seg_map=(yy * w + xx).astype(np.int32) % 251,
        gt_depth_map=(yy * 1000 + xx).astype(np.float32),  # depth-only sample: no boxes
    )
    results = MultiTaskResize(scale=(w, h), keep_ratio=False)(results)  # identity, but records a homography
    results = MultiTaskRandomFlip(prob=1.0, direction="horizontal")(results)
    for _ in range(5):
        out = MultiTaskRandomCrop(crop_size=(23, 17))(copy.deepcopy(results))
        assert out["img"].shape[:2] == out["gt_seg_map"].shape == out["gt_depth_map"].shape == (17, 23)
        expected = out["img"][..., 0].astype(np.float32) * 1000 + out["img"][..., 1]
        np.testing.assert_array_equal(out["gt_depth_map"], expected)
        np.testing.assert_array_equal(
            out["gt_seg_map"], (out["img"][..., 0].astype(np.int32) * w + out["img"][..., 1]) % 251
        )


def test_crop_without_boxes_inside():
    """Boxes left outside the crop are dropped; a crop with none left is skipped unless negatives are allowed."""
    np.random.seed(0)
    img = np.zeros((40, 60, 3), np.uint8)
    base = dict(
        img=img,
        img_shape=(40, 60),
        ori_shape=(40, 60),
        gt_bboxes=HorizontalBoxes(np.array([[0, 0, 10, 8], [50, 30, 60, 40]], np.float32)),
        gt_bboxes_labels=np.array([2, 3]),
        gt_ignore_flags=np.array([False, True]),
        gt_depth_map=np.ones((40, 60), np.float32),
    )

    class FixedOffset(MultiTaskRandomCrop):
        def __init__(self, offset, **kwargs):
            super().__init__(**kwargs)
            self.offset = offset

        def _rand_offset(self, margin):
            return self.offset

    one = FixedOffset((0, 0), crop_size=(20, 20))(copy.deepcopy(base))  # keeps box 0 only
    np.testing.assert_array_equal(one["gt_bboxes"].numpy(), [[0, 0, 10, 8]])
    assert one["gt_bboxes_labels"].tolist() == [2] and one["gt_ignore_flags"].tolist() == [False]
    assert one["gt_depth_map"].shape == (20, 20)
    clipped = FixedOffset((25, 45), crop_size=(20, 20))(copy.deepcopy(base))  # box 1 clipped to the window
    np.testing.assert_array_equal(clipped["gt_bboxes"].numpy(), [[5, 5, 15, 15]])
    assert FixedOffset((10, 15), crop_size=(20, 20))(copy.deepcopy(base)) is None  # no box in the window
    kept = FixedOffset((10, 15), crop_size=(20, 20), allow_negative_crop=True)(copy.deepcopy(base))
    assert len(kept["gt_bboxes"]) == 0 and kept["gt_depth_map"].shape == (20, 20)


def test_registered_under_our_names():
    crop = TRANSFORMS.build(dict(type="MultiTaskRandomCrop", crop_size=(8, 8)))
    photo = TRANSFORMS.build(dict(type="MultiTaskPhotoMetricDistortion"))
    assert isinstance(crop, MultiTaskRandomCrop) and isinstance(photo, MultiTaskPhotoMetricDistortion)


def test_load_annotations_names_bad_files(tmp_path):
    good_seg = tmp_path / "seg.png"
    cv2.imwrite(str(good_seg), np.zeros((4, 5), np.uint8))
    good_depth = tmp_path / "depth.png"
    cv2.imwrite(str(good_depth), np.full((4, 5), 1500, np.uint16))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    missing = tmp_path / "missing_depth.png"
    load = LoadMultiTaskAnnotations()

    out = load(dict(seg_map_path=str(good_seg), depth_map_path=str(good_depth), depth_scale=1000.0))
    assert out["gt_seg_map"].shape == (4, 5) and np.allclose(out["gt_depth_map"], 1.5)
    with pytest.raises(DataError, match="corrupt.png"):
        load(dict(seg_map_path=str(corrupt)))
    with pytest.raises(DataError, match="corrupt.png"):
        load(dict(depth_map_path=str(corrupt)))
    with pytest.raises(DataError, match="missing_depth.png"):
        load(dict(seg_map_path=str(good_seg), depth_map_path=str(missing)))

    # skip_bad: the sample is dropped (mmengine's dataset then draws another) and counted
    skipping = LoadMultiTaskAnnotations(skip_bad=True)
    assert skipping(dict(seg_map_path=str(corrupt))) is None
    assert skipping(dict(depth_map_path=str(missing))) is None
    assert skipping.num_skipped == 2
    assert skipping(dict(seg_map_path=str(good_seg))) is not None
