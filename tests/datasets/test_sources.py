"""The VOC / NYU loaders and the synthetic sources: round trips through the files on disk."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from multitask_vision.datasets.nyu import NYU13_CLASSES, NYUv2Dataset
from multitask_vision.datasets.synthetic import scene_rng, write_nyu_sample, write_split, write_voc_sample
from multitask_vision.datasets.synthetic_scene import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SEG_CLASSES,
    SceneObject,
    SyntheticScene,
    render_scene,
)
from multitask_vision.datasets.synthetic_sources import SyntheticNYUDataset, SyntheticVOCDataset
from multitask_vision.datasets.voc import VOC_CLASSES, VOCMultitaskDataset
from multitask_vision.registry import DATASETS
from multitask_vision.utils.errors import DataError

SIZE = (32, 48)  # (height, width)


def _hand_scene(shift: int = 0) -> SyntheticScene:
    """Two known objects: a box (visible) and a ball (difficult)."""
    h, w = SIZE
    image = np.full((h, w, 3), 90, np.uint8)
    depth = np.full((h, w), 10.0, np.float32)
    depth[20:] = np.linspace(6.0, 2.0, h - 20, dtype=np.float32)[:, None]
    inst = np.zeros((h, w), np.int32)
    inst[5 + shift : 15 + shift, 3:21] = 1
    inst[20:30, 30:46] = 2
    depth[inst == 1], depth[inst == 2] = 2.5, 4.25
    image[inst == 1], image[inst == 2] = (200, 30, 30), (30, 200, 30)
    objects = [
        SceneObject(0, 2.5, (3, 5 + shift, 20, 14 + shift), 10.0, 180, 1.0, False, False),
        SceneObject(1, 4.25, (30, 20, 45, 29), 10.0, 160, 0.2, False, True),
    ]
    seg = np.array([0, 1, 2], np.uint8)[inst]
    return SyntheticScene(image=image, depth=depth, seg=seg, instances=inst, objects=objects)


@pytest.fixture(scope="module")
def hand_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand_voc")
    for i in range(3):
        write_voc_sample(str(root), f"im{i}", _hand_scene(shift=i), with_seg=i != 1)
    write_split(str(root / "ImageSets" / "Main" / "train.txt"), ["im0", "im1", "im2"])
    write_split(str(root / "ImageSets" / "Segmentation" / "train.txt"), ["im0", "im2"])
    return root


@pytest.fixture(scope="module")
def hand_nyu(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand_nyu")
    holes = np.zeros(SIZE, bool)
    holes[0, :4] = True
    for i in range(2):
        write_nyu_sample(str(root), f"n{i}", _hand_scene(shift=i), holes=holes)
    write_split(str(root / "train.txt"), ["n0", "n1"])
    return root


def _voc(root, **kwargs):
    kwargs.setdefault("metainfo", dict(classes=SYNTHETIC_CLASSES))
    return VOCMultitaskDataset(str(root), "train", serialize_data=False, **kwargs)


def test_voc_round_trip(hand_voc):
    ds = _voc(hand_voc)
    assert len(ds) == 3 and ds.task_names == ("detection", "segmentation")
    assert ds.tasks == {"detection": "instances", "segmentation": "sem_seg"}
    for i in range(3):
        info = ds.get_data_info(i)
        assert info["img_id"] == f"im{i}" and info["img_path"].endswith(f"JPEGImages/im{i}.jpg")
        assert (info["height"], info["width"]) == SIZE
        assert info["source"] == "VOCMultitaskDataset"
        assert info["instances"] == [
            dict(bbox=[3.0, 5.0 + i, 20.0, 14.0 + i], bbox_label=0, ignore_flag=0),
            dict(bbox=[30.0, 20.0, 45.0, 29.0], bbox_label=1, ignore_flag=1),  # difficult -> ignored
        ]
        if i == 1:  # no SegmentationClass PNG: detection only, and no mask path at all
            assert info["tasks"] == ("detection",) and "seg_map_path" not in info
        else:
            assert info["tasks"] == ("detection", "segmentation")
            seg = np.array(Image.open(info["seg_map_path"]))  # palette indices (cv2 would give colours)
            assert seg.shape == SIZE and set(np.unique(seg)) == {0, 1, 2, 255}
    meta = ds.metainfo
    assert meta["classes"] == SYNTHETIC_CLASSES and meta["seg_classes"] == SYNTHETIC_SEG_CLASSES
    assert len(meta["palette"]) == 4 and len(meta["seg_palette"]) == 5
    assert ds.get_cat_ids(0) == [0, 1]


def test_voc_segmentation_image_set_and_task_mapping(hand_voc):
    ds = _voc(hand_voc, image_set="Segmentation", tasks=dict(seg="sem_seg"), source_name="voc_seg")
    assert [ds.get_data_info(i)["img_id"] for i in range(len(ds))] == ["im0", "im2"]
    info = ds.get_data_info(0)
    assert info["tasks"] == ("seg",) and info["source"] == "voc_seg" and "instances" not in info
    # a sample labelled for none of the mapped tasks is dropped (im1 has no mask)
    assert len(_voc(hand_voc, tasks=dict(seg="sem_seg"))) == 2
    det = _voc(hand_voc, tasks=dict(det="instances"))
    assert all(det.get_data_info(i)["tasks"] == ("det",) for i in range(3))
    assert "seg_map_path" not in det.get_data_info(0)
    with pytest.raises(ValueError, match="'depth'"):
        _voc(hand_voc, tasks=dict(detection="instances", depth="depth"))
    with pytest.raises(ValueError, match="unknown filter_cfg"):
        _voc(hand_voc, filter_cfg=dict(bogus=1))


def test_voc_classes_outside_metainfo_are_dropped(hand_voc):
    ds = _voc(hand_voc, metainfo=dict(classes=("ball",)))
    assert ds.get_data_info(0)["instances"] == [
        dict(bbox=[30.0, 20.0, 45.0, 29.0], bbox_label=0, ignore_flag=1)
    ]
    meta = ds.metainfo
    assert meta["seg_classes"] == ("background", "ball") and len(meta["palette"]) == 1


REAL_VOC_XML = """<annotation>
\t<folder>VOC2012</folder>
\t<filename>2007_000032.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t</source>
\t<size>
\t\t<width>500</width>
\t\t<height>281</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>1</segmented>
\t<object>
\t\t<name>aeroplane</name>
\t\t<pose>Frontal</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>104</xmin>
\t\t\t<ymin>78</ymin>
\t\t\t<xmax>375</xmax>
\t\t\t<ymax>183</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Frontal</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>26</xmin>
\t\t\t<ymin>189</ymin>
\t\t\t<xmax>44</xmax>
\t\t\t<ymax>238</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def test_real_voc_xml(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations" / "2007_000032.xml").write_text(REAL_VOC_XML)
    (tmp_path / "JPEGImages" / "2007_000032.jpg").write_bytes(b"")  # not decoded: size comes from the XML
    write_split(str(tmp_path / "ImageSets" / "Main" / "trainval.txt"), ["2007_000032"])
    ds = VOCMultitaskDataset(str(tmp_path), "trainval")
    info = ds.get_data_info(0)
    assert (info["width"], info["height"]) == (500, 281)
    assert info["instances"] == [
        dict(bbox=[103.0, 77.0, 374.0, 182.0], bbox_label=VOC_CLASSES.index("aeroplane"), ignore_flag=0),
        dict(bbox=[25.0, 188.0, 43.0, 237.0], bbox_label=VOC_CLASSES.index("person"), ignore_flag=1),
    ]
    assert info["tasks"] == ("detection",)  # no SegmentationClass folder
    assert ds.metainfo["classes"] == VOC_CLASSES and len(ds.metainfo["seg_classes"]) == 21


def _broken_copy(src, dst):
    shutil.copytree(src, dst)
    (dst / "Annotations" / "im0.xml").write_text("<annotation><object><name>box</name>")  # truncated
    (dst / "JPEGImages" / "im2.jpg").unlink()
    return dst


def test_bad_samples_name_the_file(hand_voc, tmp_path):
    root = _broken_copy(hand_voc, tmp_path / "broken")
    with pytest.raises(ValueError, match=r"Annotations/im0\.xml"):
        _voc(root)
    (root / "ImageSets" / "Main" / "train.txt").write_text("im1\nim2\n")
    with pytest.raises(DataError, match=r"JPEGImages/im2\.jpg"):
        _voc(root)
    (root / "ImageSets" / "Main" / "train.txt").write_text("im0\nim1\nim2\nim9\n")
    ds = _voc(root, skip_bad=True)
    assert [ds.get_data_info(i)["img_id"] for i in range(len(ds))] == ["im1"]
    assert ds.num_skipped == 3
    with pytest.raises(DataError, match="nowhere"):
        _voc(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"ImageSets/Main/test\.txt"):
        VOCMultitaskDataset(str(root), "test")


def test_nyu_round_trip(hand_nyu):
    ds = NYUv2Dataset(
        str(hand_nyu), "train", metainfo=dict(classes=SYNTHETIC_SEG_CLASSES), serialize_data=False
    )
    assert len(ds) == 2 and ds.task_names == ("depth", "segmentation")
    for i in range(2):
        info = ds.get_data_info(i)
        assert info["tasks"] == ("depth", "segmentation") and info["depth_scale"] == 1000.0
        assert (info["height"], info["width"]) == SIZE and info["source"] == "NYUv2Dataset"
        depth = cv2.imread(info["depth_map_path"], cv2.IMREAD_UNCHANGED) / info["depth_scale"]
        expected = _hand_scene(shift=i).depth
        assert (depth[0, :4] == 0).all()
        np.testing.assert_allclose(depth[1:], expected[1:], atol=5e-4)
        np.testing.assert_array_equal(
            cv2.imread(info["seg_map_path"], cv2.IMREAD_UNCHANGED), _hand_scene(i).seg
        )
    assert ds.metainfo["seg_classes"] == SYNTHETIC_SEG_CLASSES
    assert NYUv2Dataset.METAINFO["classes"] == NYU13_CLASSES


def test_nyu_label_dir_missing_files_and_errors(hand_nyu, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(hand_nyu, root)
    shutil.copytree(root / "labels", root / "label13")
    (root / "labels" / "n1.png").unlink()
    ds = NYUv2Dataset(str(root), "train", serialize_data=False)
    assert [ds.get_data_info(i)["tasks"] for i in range(2)] == [("depth", "segmentation"), ("depth",)]
    assert "seg_map_path" not in ds.get_data_info(1)
    ds13 = NYUv2Dataset(str(root), "train", label_dir="label13", serialize_data=False)
    assert ds13.get_data_info(1)["seg_map_path"].endswith("label13/n1.png")
    with pytest.raises(ValueError, match="'normals'"):
        NYUv2Dataset(str(root), "train", tasks=dict(normals="normals"))
    (root / "images" / "n0.png").unlink()
    with pytest.raises(DataError, match=r"images/n0\.png"):
        NYUv2Dataset(str(root), "train")
    assert len(NYUv2Dataset(str(root), "train", skip_bad=True)) == 1
    with pytest.raises(DataError, match=r"val\.txt"):
        NYUv2Dataset(str(root), "val")


def test_synthetic_voc_source(tmp_path):
    kwargs = dict(num_train=8, num_val=3, image_size=(64, 64), seed=2, serialize_data=False)
    ds = SyntheticVOCDataset(str(tmp_path / "svoc"), "train", **kwargs)
    assert len(ds) == 8 and ds.metainfo["classes"] == SYNTHETIC_CLASSES
    assert ds.metainfo["seg_classes"] == SYNTHETIC_SEG_CLASSES
    seg_only = 0
    for i in range(8):
        info = ds.get_data_info(i)
        scene = render_scene(scene_rng(2, "voc", "train", i), (64, 64))
        assert info["instances"] == [
            dict(bbox=[float(v) for v in o.bbox], bbox_label=o.label, ignore_flag=int(o.difficult))
            for o in scene.objects
            if o.bbox[2] > o.bbox[0] and o.bbox[3] > o.bbox[1]  # 1-pixel-thin boxes are not written
        ]
        has_seg = "seg_map_path" in info
        assert info["tasks"] == (("detection", "segmentation") if has_seg else ("detection",))
        seg_only += has_seg
    assert seg_only == round(0.7 * 8)
    val = SyntheticVOCDataset(str(tmp_path / "svoc"), "val", **kwargs)
    assert len(val) == 3


def test_synthetic_nyu_source_built_from_registry(tmp_path):
    cfg = dict(
        type="SyntheticNYUDataset", data_root=str(tmp_path / "snyu"), split="val", num_train=2, num_val=3,
        image_size=(48, 48), seed=1, source_name="syn_nyu",
    )  # fmt: skip
    ds = DATASETS.build(cfg)
    assert isinstance(ds, SyntheticNYUDataset) and len(ds) == 3
    assert ds.metainfo["classes"] == SYNTHETIC_SEG_CLASSES
    info = ds.get_data_info(0)
    assert info["tasks"] == ("depth", "segmentation") and info["source"] == "syn_nyu"
    scene = render_scene(scene_rng(1, "nyu", "val", 0), (48, 48))
    depth = cv2.imread(info["depth_map_path"], cv2.IMREAD_UNCHANGED) / info["depth_scale"]
    valid = depth > 0
    assert 0.8 < valid.mean() < 1.0  # Kinect-like holes
    np.testing.assert_allclose(depth[valid], scene.depth[valid], atol=5e-4)
    np.testing.assert_array_equal(cv2.imread(info["seg_map_path"], cv2.IMREAD_UNCHANGED), scene.seg)


def test_holdout_carves_a_seeded_validation_part(tmp_path):
    """NYUv2 has no validation split: ``holdout`` carves one out of train.txt, disjoint from the rest, the same
    on every run, and the two parts cover the split."""
    kw = dict(data_root=str(tmp_path / "nyu"), split="train", num_train=20, num_val=1, image_size=(32, 32))
    ids = lambda ds: [ds.get_data_info(i)["img_id"] for i in range(len(ds))]  # noqa: E731
    held = ids(SyntheticNYUDataset(**kw, holdout=dict(num=5, seed=0, part="held")))
    rest = ids(SyntheticNYUDataset(**kw, holdout=dict(num=5, seed=0, part="rest")))
    assert len(held) == 5 and len(rest) == 15 and not set(held) & set(rest)
    assert sorted(held + rest) == ids(SyntheticNYUDataset(**kw))
    assert ids(SyntheticNYUDataset(**kw, holdout=dict(num=5, seed=0, part="held"))) == held  # seeded
    assert ids(SyntheticNYUDataset(**kw, holdout=dict(num=5, seed=1, part="held"))) != held
    assert len(ids(SyntheticNYUDataset(**kw, holdout=dict(num=0.25, seed=0, part="held")))) == 5
    with pytest.raises(ValueError, match="holdout must be"):
        SyntheticNYUDataset(**kw, holdout=dict(num=5, part="held"))
    with pytest.raises(ValueError, match="must leave samples on both sides"):
        SyntheticNYUDataset(**kw, holdout=dict(num=20, seed=0, part="rest"))
