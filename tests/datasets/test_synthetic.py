"""The procedural scene generator, its writers and ensure_synthetic_data."""

from __future__ import annotations

import os
import threading
import time
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from PIL import Image

from multitask_vision.datasets.synthetic import (
    MANIFEST,
    ensure_synthetic_data,
    scene_rng,
    write_nyu_sample,
    write_split,
    write_voc_sample,
)
from multitask_vision.datasets.synthetic_scene import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SEG_CLASSES,
    WALL_DEPTH,
    instance_boundary,
    kinect_holes,
    render_scene,
)
from multitask_vision.datasets.voc import VOCMultitaskDataset
from multitask_vision.utils.errors import UserError


def _scenes(n: int, seed: int = 0, size=(96, 96)):
    return [render_scene(scene_rng(seed, "voc", "train", i), size) for i in range(n)]


def _tree_bytes(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_class_names():
    assert len(SYNTHETIC_CLASSES) == 4
    assert SYNTHETIC_SEG_CLASSES == ("background",) + SYNTHETIC_CLASSES


def test_render_is_deterministic_by_seed():
    a, b = render_scene(7, (64, 80)), render_scene(7, (64, 80))
    assert a.image.shape == (64, 80, 3) and a.image.dtype == np.uint8
    for field in ("image", "depth", "seg", "instances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.objects == b.objects
    assert not np.array_equal(a.image, render_scene(8, (64, 80)).image)


def test_scene_consistency():
    """Boxes are the tight boxes of the visible pixels; seg/depth follow the instance map."""
    occluded = 0
    for scene in _scenes(60):
        inst, seg, depth = scene.instances, scene.seg, scene.depth
        assert set(np.unique(inst)) <= set(range(len(scene.objects) + 1))
        np.testing.assert_array_equal(seg > 0, inst > 0)
        assert depth.min() > 0 and depth.max() <= WALL_DEPTH + 1e-4
        for k, obj in enumerate(scene.objects):
            ys, xs = np.nonzero(inst == k + 1)
            assert len(ys) == obj.visible_pixels > 0
            assert obj.bbox == (xs.min(), ys.min(), xs.max(), ys.max())  # tight, 0-based inclusive
            assert (seg[ys, xs] == obj.label + 1).all()
            d = depth[ys, xs]
            assert (d < scene.wall_depth).all()
            assert (d <= obj.depth + 1e-4).all() and (
                d >= obj.depth - 0.6
            ).all()  # the ball bulges by < 0.4 m
            assert obj.difficult == (obj.visible_fraction < 0.3 or obj.visible_pixels < 12)
            occluded += obj.visible_fraction < 0.999
        # the background is the floor (depth decreasing downwards) then the wall at a fixed depth
        bg_rows = np.where((inst == 0).all(1))[0]
        assert (np.diff(depth[bg_rows, 0]) <= 1e-5).all()
    assert occluded > 0, "no occlusion in 60 scenes"


def test_perspective_farther_objects_are_smaller():
    objs = [o for s in _scenes(80) for o in s.objects]
    depth = np.array([o.depth for o in objs])
    height = np.array([o.height_px for o in objs])
    far = depth > np.median(depth)
    assert height[far].mean() < 0.6 * height[~far].mean()
    assert np.corrcoef(1 / depth, height)[0, 1] > 0.8
    # an object's base sits lower in the image the nearer it is
    bottoms = np.array([o.bbox[3] for o in objs if not o.truncated and o.visible_fraction > 0.999])
    depths = np.array([o.depth for o in objs if not o.truncated and o.visible_fraction > 0.999])
    assert np.corrcoef(depths, bottoms)[0, 1] < -0.8


def test_generation_speed(tmp_path):
    """A sanity measure, not an assertion on time: prints images/s for the report."""
    start = time.perf_counter()
    ensure_synthetic_data(tmp_path / "voc", "voc", 60, 0, (128, 128), seed=1)
    rate = 60 / (time.perf_counter() - start)
    print(f"synthetic voc generation: {rate:.0f} img/s")
    assert len(os.listdir(tmp_path / "voc" / "JPEGImages")) == 60


def test_voc_writer_leaves_out_one_pixel_thin_boxes(tmp_path):
    """Read back as mmdet does (xml - 1), a box one pixel wide or high has no area: the writer leaves such
    objects out of the XML (they stay in the image and the masks)."""
    scene = render_scene(scene_rng(0, "voc", "train", 5), (64, 64))
    thin = [o for o in scene.objects if o.bbox[2] == o.bbox[0] or o.bbox[3] == o.bbox[1]]
    assert thin, "this scene has a 1-pixel-thin object (it is what the test is about)"
    write_voc_sample(str(tmp_path), "a", scene)
    objs = ET.parse(tmp_path / "Annotations" / "a.xml").getroot().findall("object")
    boxes = [[int(node.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for node in objs]
    assert len(boxes) == len(scene.objects) - len(thin)
    assert all(x2 > x1 and y2 > y1 for x1, y1, x2, y2 in boxes)
    write_split(str(tmp_path / "ImageSets" / "Main" / "a.txt"), ["a"])
    ds = VOCMultitaskDataset(
        str(tmp_path), "a", metainfo=dict(classes=SYNTHETIC_CLASSES), serialize_data=False
    )
    assert len(ds.get_data_info(0)["instances"]) == len(boxes)  # the reader keeps every written box


def test_voc_writer_one_based_boxes_and_palette_png(tmp_path):
    scene = render_scene(3, (64, 64))
    write_voc_sample(str(tmp_path), "a", scene)
    root = ET.parse(tmp_path / "Annotations" / "a.xml").getroot()
    assert root.findtext("filename") == "a.jpg"
    assert (root.findtext("size/width"), root.findtext("size/height"), root.findtext("size/depth")) == (
        "64",
        "64",
        "3",
    )
    objs = root.findall("object")
    assert len(objs) == len(scene.objects)  # no 1-pixel-thin object in this scene
    for node, obj in zip(objs, scene.objects):
        assert node.findtext("name") == obj.name
        assert node.findtext("pose") == "Unspecified"
        box = [int(node.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        assert box == [v + 1 for v in obj.bbox]
        assert int(node.findtext("difficult")) == obj.difficult
    png = Image.open(tmp_path / "SegmentationClass" / "a.png")
    assert png.mode == "P"
    assert png.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    seg = np.array(png)
    edge = instance_boundary(scene.instances)
    assert (seg[edge] == 255).all()
    np.testing.assert_array_equal(seg[~edge], scene.seg[~edge])
    img = cv2.imread(str(tmp_path / "JPEGImages" / "a.jpg"))[..., ::-1]
    assert np.abs(img.astype(int) - scene.image).mean() < 8  # JPEG of the same RGB image


def test_nyu_writer_depth_in_millimetres_with_holes(tmp_path):
    scene = render_scene(4, (64, 64))
    holes = kinect_holes(np.random.default_rng(0), scene)
    assert 0 < holes.mean() < 0.15
    write_nyu_sample(str(tmp_path), "a", scene, holes=holes)
    mm = cv2.imread(str(tmp_path / "depth" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    np.testing.assert_array_equal(mm == 0, holes)
    np.testing.assert_allclose(mm[~holes] / 1000.0, scene.depth[~holes], atol=5e-4)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "labels" / "a.png"), cv2.IMREAD_UNCHANGED), scene.seg
    )
    rgb = cv2.imread(str(tmp_path / "images" / "a.png"))[..., ::-1]
    np.testing.assert_array_equal(rgb, scene.image)


@pytest.mark.parametrize("layout", ["voc", "nyu"])
def test_same_seed_same_bytes(tmp_path, layout):
    a = ensure_synthetic_data(tmp_path / "a", layout, 5, 2, (48, 64), seed=3)
    b = ensure_synthetic_data(tmp_path / "b", layout, 5, 2, (48, 64), seed=3)
    c = ensure_synthetic_data(tmp_path / "c", layout, 5, 2, (48, 64), seed=4)
    ta, tb, tc = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
    assert len(ta) > 10 and ta == tb
    assert ta.keys() != tc.keys() or any(ta[k] != tc[k] for k in ta if k != MANIFEST)


def test_voc_seg_fraction_and_split_files(tmp_path):
    root = ensure_synthetic_data(tmp_path / "voc", "voc", 10, 4, (48, 48), seg_fraction=0.7)
    for split, n in (("train", 10), ("val", 4)):
        main = (tmp_path / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        seg = (tmp_path / "voc" / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        assert len(main) == n and len(seg) == round(0.7 * n) and set(seg) < set(main)
        with_png = {i for i in main if os.path.exists(os.path.join(root, "SegmentationClass", i + ".png"))}
        assert with_png == set(seg)


def test_ensure_is_idempotent_and_regenerates_on_change(tmp_path):
    root = tmp_path / "syn"
    ensure_synthetic_data(root, "voc", 4, 2, (32, 32), seed=0)
    manifest, image = root / MANIFEST, root / "JPEGImages" / "train_000000.jpg"
    stamps = (manifest.stat().st_mtime_ns, image.stat().st_mtime_ns, root.stat().st_ino)
    ensure_synthetic_data(root, "voc", 4, 2, (32, 32), seed=0)
    assert (manifest.stat().st_mtime_ns, image.stat().st_mtime_ns, root.stat().st_ino) == stamps

    ensure_synthetic_data(root, "voc", 6, 2, (32, 32), seed=0)  # more images
    assert len((root / "ImageSets" / "Main" / "train.txt").read_text().split()) == 6
    ensure_synthetic_data(root, "voc", 6, 2, (32, 32), seed=0, seg_fraction=1.0)  # another option
    assert len(os.listdir(root / "SegmentationClass")) == 8
    assert [p for p in os.listdir(tmp_path) if p != "syn"] == []  # no temporary folders left


def test_ensure_rejects_foreign_folders_and_unknown_options(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="refusing"):  # one line from train.py
        ensure_synthetic_data(tmp_path / "mine", "voc", 2, 1, (32, 32))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    with pytest.raises(UserError, match="depth_holes"):
        ensure_synthetic_data(tmp_path / "x", "voc", 2, 1, (32, 32), depth_holes=False)
    with pytest.raises(ValueError, match="layout"):
        ensure_synthetic_data(tmp_path / "x", "coco", 2, 1, (32, 32))


def test_ensure_concurrent_callers(tmp_path):
    errors = []

    def run():
        try:
            ensure_synthetic_data(tmp_path / "race", "nyu", 6, 2, (32, 32), seed=5)
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == ["race"]
    assert len(os.listdir(tmp_path / "race" / "images")) == 8


@pytest.mark.parametrize("cls_name", ["SyntheticVOCDataset", "SyntheticNYUDataset"])
def test_lazy_source_generates_its_data_at_the_first_read(tmp_path, cls_name):
    """With lazy_init=True a synthetic source is built without writing anything (its metainfo, e.g. the
    inferencer's class names, needs no files); its first read generates the data, as a plain build does."""
    from multitask_vision.datasets import synthetic_sources

    cls = getattr(synthetic_sources, cls_name)
    root = tmp_path / "lazy"
    ds = cls(data_root=str(root), split="val", num_train=2, num_val=3, image_size=(32, 32), lazy_init=True)
    assert not root.exists() and ds.metainfo["seg_classes"][1] == SYNTHETIC_CLASSES[0]
    assert len(ds) == 3 and root.is_dir()
    eager = cls(data_root=str(tmp_path / "eager"), split="val", num_train=2, num_val=3, image_size=(32, 32))
    assert (tmp_path / "eager").is_dir() and len(eager) == 3
