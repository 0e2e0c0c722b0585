"""The catalogue of data faults checked at load, one case each: what the user gets by default (an error naming
the file and the value, or a counted fix), and what ``skip_bad=True`` does (the sample skipped and counted)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from multitask_vision.datasets.nyu import NYUv2Dataset
from multitask_vision.datasets.synthetic import scene_rng, write_nyu_sample, write_split, write_voc_sample
from multitask_vision.datasets.synthetic_scene import SYNTHETIC_CLASSES, SYNTHETIC_SEG_CLASSES, render_scene
from multitask_vision.datasets.transforms import LoadMultiTaskAnnotations, LoadMultiTaskImage
from multitask_vision.datasets.voc import VOCMultitaskDataset
from multitask_vision.utils.errors import DataError

SIZE = (48, 48)
PIPELINE = [LoadMultiTaskImage(), LoadMultiTaskAnnotations()]


def make_layout(root: Path, layout: str) -> None:
    """Two good samples, ``s0`` and ``s1``, in the VOC or the NYU layout."""
    for i in range(2):
        scene = render_scene(scene_rng(7, layout, "train", i), SIZE, min_objects=2)
        if layout == "voc":
            write_voc_sample(str(root), f"s{i}", scene)
        else:
            write_nyu_sample(str(root), f"s{i}", scene)
    split = root / "ImageSets" / "Main" / "train.txt" if layout == "voc" else root / "train.txt"
    write_split(str(split), ["s0", "s1"])


def build(root: Path, layout: str, **kwargs):
    if layout == "voc":
        meta = dict(classes=SYNTHETIC_CLASSES)
        return VOCMultitaskDataset(str(root), "train", metainfo=meta, pipeline=PIPELINE, **kwargs)
    return NYUv2Dataset(
        str(root), "train", metainfo=dict(classes=SYNTHETIC_SEG_CLASSES), pipeline=PIPELINE, **kwargs
    )


def load_all(ds) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def png(path: Path, array: np.ndarray) -> None:
    assert cv2.imwrite(str(path), array)


def cut(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def edit_xml(root: Path, old: str, new: str) -> None:
    xml = root / "Annotations" / "s0.xml"
    text = xml.read_text()
    assert old in text
    xml.write_text(text.replace(old, new, 1))


def first_box(root: Path, xmin: int, xmax: int) -> None:
    """Rewrite the first object's x extent in s0.xml."""
    xml = root / "Annotations" / "s0.xml"
    text = xml.read_text()
    text = re.sub(r"<xmin>\d+</xmin>", f"<xmin>{xmin}</xmin>", text, count=1)
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", f"<xmax>{xmax}</xmax>", text, count=1))


@dataclass
class Case:
    layout: str
    fault: Callable[[Path], None]
    error: str | None = None  # regex of the DataError (it names the file); None: loads
    check: Callable[[object], None] | None = None  # for cases that load: what the loader made of it
    at_parse: bool = False  # the error comes when the dataset is built (else when the sample is loaded)


def _gray(root):
    img = cv2.imread(str(root / "images" / "s0.png"))
    png(root / "images" / "s0.png", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))


def _rgba(root):
    img = cv2.imread(str(root / "images" / "s0.png"))
    png(root / "images" / "s0.png", cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))


def _three_channels(ds):
    out = ds[0]
    assert out["img"].shape == (*SIZE, 3)


def _gray_replicated(ds):
    img = ds[0]["img"]
    assert (
        img.shape == (*SIZE, 3) and (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    )


def _labels_with_void(root):
    seg = cv2.imread(str(root / "labels" / "s0.png"), cv2.IMREAD_UNCHANGED)
    seg[:5] = 255
    png(root / "labels" / "s0.png", seg)


def _void_kept(ds):
    assert (ds[0]["gt_seg_map"][:5] == 255).all()


def _box_count(kind, n):
    def check(ds):
        assert ds.box_fixes[kind] == n
        x1, _, x2, _ = ds.get_data_info(0)["instances"][0]["bbox"]
        assert 0 <= x1 < x2 <= SIZE[1]
        load_all(ds)

    return check


CATALOGUE = {
    "map size differs from the image": Case(
        "nyu", lambda r: png(r / "depth" / "s0.png", np.full((40, 48), 1500, np.uint16)),
        error=r"depth/s0\.png is 48x40 pixels but its image .*images/s0\.png is 48x48"),
    "segmentation label outside the classes": Case(
        "nyu", lambda r: png(r / "labels" / "s0.png", np.full(SIZE, 7, np.uint8)),
        error=r"labels/s0\.png holds value\(s\) 7: the source has 5 classes"),
    "label 255 (unlabelled) is allowed": Case("nyu", _labels_with_void, check=_void_kept),
    "segmentation map with no labelled pixel": Case(
        "nyu", lambda r: png(r / "labels" / "s0.png", np.full(SIZE, 255, np.uint8)),
        error=r"labels/s0\.png has no labelled pixel \(all 255\)"),
    "depth map with no valid pixel": Case(
        "nyu", lambda r: png(r / "depth" / "s0.png", np.zeros(SIZE, np.uint16)),
        error=r"depth/s0\.png has no valid pixel \(all 0\)"),
    "depth map with 3 channels": Case(
        "nyu", lambda r: png(r / "depth" / "s0.png", np.full((*SIZE, 3), 9, np.uint8)),
        error=r"depth map .*depth/s0\.png is not a single-channel image"),
    "1-channel image": Case("nyu", _gray, check=_gray_replicated),
    "4-channel image": Case("nyu", _rgba, check=_three_channels),
    "missing image": Case("nyu", lambda r: (r / "images" / "s0.png").unlink(), error=r"missing image .*images/s0\.png",
                          at_parse=True),
    "missing annotations": Case(
        "nyu", lambda r: [(r / d / "s0.png").unlink() for d in ("depth", "labels")],
        error=r"missing annotation for 's0'", at_parse=True),
    "truncated JPEG": Case("voc", lambda r: cut(r / "JPEGImages" / "s0.jpg"),
                           error=r"cannot decode image .*JPEGImages/s0\.jpg: truncated \(the JPEG has no end-of-image"),
    "truncated depth PNG": Case("nyu", lambda r: cut(r / "depth" / "s0.png"),
                                error=r"cannot decode depth map .*depth/s0\.png: truncated \(the PNG has no IEND"),
    "truncated mask PNG": Case("voc", lambda r: cut(r / "SegmentationClass" / "s0.png"),
                               error=r"segmentation map .*SegmentationClass/s0\.png: truncated"),
    "malformed XML": Case("voc", lambda r: edit_xml(r, "</annotation>", ""),
                          error=r"corrupt VOC annotation .*Annotations/s0\.xml", at_parse=True),
    "box reaching outside the image": Case("voc", lambda r: first_box(r, 10, 60), check=_box_count("clipped", 1)),
    "box of zero width": Case("voc", lambda r: first_box(r, 20, 20), check=_box_count("dropped", 1)),
    "inverted box": Case("voc", lambda r: first_box(r, 30, 20), check=_box_count("dropped", 1)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_catalogue(tmp_path, name):
    case = CATALOGUE[name]
    make_layout(tmp_path, case.layout)
    case.fault(tmp_path)
    if case.error is None:
        case.check(build(tmp_path, case.layout, serialize_data=False))
        return
    with pytest.raises(DataError, match=case.error):
        load_all(build(tmp_path, case.layout))
    # skip_bad=True: the bad sample is skipped (training draws another) and counted
    ds = build(tmp_path, case.layout, skip_bad=True)
    loaded = load_all(ds)
    assert all(out["img_id"] == "s1" for out in loaded)
    if case.at_parse:
        assert len(ds) == 1 and ds.num_skipped == 1
    else:  # each draw of s0 is skipped and counted (mmengine draws at random until a sample loads)
        assert len(ds) == 2 and ds.num_skipped >= 1


def test_empty_split_file(tmp_path):
    make_layout(tmp_path, "nyu")
    (tmp_path / "train.txt").write_text("\n")
    for skip_bad in (False, True):
        with pytest.raises(DataError, match=r"train\.txt lists no samples"):
            build(tmp_path, "nyu", skip_bad=skip_bad)
