"""NYUv2 .mat converter: a tiny file in the real MATLAB v7.3 layout -> the NYU layout our loader reads."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from PIL import Image
from scipy.io import savemat

from multitask_vision.datasets.converters import (
    NYU13_CLASSES,
    NYU40_CLASSES,
    NYU40_TO_13,
    NYU894_TO_40,
    convert_nyu_mat,
    nyu_label_luts,
    read_nyu_splits,
)
from multitask_vision.datasets.nyu import NYUv2Dataset
from multitask_vision.datasets.transforms import LoadMultiTaskAnnotations

REPO = Path(__file__).resolve().parents[2]
N, H, W = 4, 6, 8
# raw class (1-based, 894 classes) -> (40-class index, 13-class index), from the published tables:
# 21 wall -> wall / wall, 11 floor -> floor / floor, 157 bed -> bed / bed, 4 ceiling -> ceiling / ceiling,
# 88 bookshelf -> bookshelf / furniture, 172 television -> television / tv, 331 person -> person / objects,
# 894 (last raw class) -> otherprop / objects
KNOWN = {
    21: (0, 11), 11: (1, 4), 157: (3, 0), 4: (21, 2), 88: (9, 5), 172: (24, 10), 331: (30, 6), 894: (39, 6),
}  # fmt: skip
RAW_NAMES = {3: "cabinet", 4: "ceiling", 5: "chair", 11: "floor", 19: "table", 21: "wall"}


def _names(anchors=RAW_NAMES) -> list[str]:
    return [anchors.get(i, f"class{i}") for i in range(1, 895)]


def write_labeled_mat(path: Path, images, depths, labels, names=None) -> None:
    """Write arrays given as (N, H, W[, 3]) the way MATLAB v7.3 stores them: HDF5 with a 512-byte MATLAB
    header block and every array's axes reversed (images (N, 3, W, H), depths/labels (N, W, H)); ``names`` as
    a cell array, i.e. object references to uint16 char arrays."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=np.asarray(images, np.uint8).transpose(0, 3, 2, 1))
        f.create_dataset("depths", data=np.asarray(depths, np.float32).transpose(0, 2, 1))
        f.create_dataset("labels", data=np.asarray(labels, np.uint16).transpose(0, 2, 1))
        if names is not None:
            refs = f.create_group("#refs#")
            ds = [refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in s], np.uint16))
                  for i, s in enumerate(names)]  # fmt: skip
            f.create_dataset("names", data=np.array([[d.ref for d in ds]], dtype=h5py.ref_dtype))
    with open(path, "r+b") as f:
        f.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        )


def write_splits_mat(path: Path, train, test) -> None:
    """``splits.mat`` as published: MATLAB v5, column vectors of 1-based doubles."""
    savemat(
        str(path), {"trainNdxs": np.array(train, float)[:, None], "testNdxs": np.array(test, float)[:, None]}
    )


@pytest.fixture(scope="module")
def nyu_mat(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu_mat")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (N, H, W, 3), dtype=np.uint8)
    images[0, 2, 5] = (255, 10, 20)  # a known pixel at (row 2, col 5)
    depths = rng.uniform(0.5, 9.0, (N, H, W)).astype(np.float32)
    depths[0, 0, 0], depths[0, 1, 7], depths[0, 5, 3] = 0.0, 1.2346, 9.9994  # invalid, 1235 mm, 9999 mm
    labels = np.zeros((N, H, W), np.uint16)
    for j, raw in enumerate(KNOWN):
        labels[0, 3, j] = raw
    labels[1:] = rng.integers(0, 895, (N - 1, H, W))
    write_labeled_mat(root / "nyu_depth_v2_labeled.mat", images, depths, labels, names=_names())
    write_splits_mat(root / "splits.mat", train=[1, 3], test=[2, 4])
    return root, images, depths, labels


@pytest.fixture(scope="module")
def converted(nyu_mat, tmp_path_factory):
    root = nyu_mat[0]
    out = tmp_path_factory.mktemp("nyuv2")
    counts = convert_nyu_mat(str(root / "nyu_depth_v2_labeled.mat"), str(out), log_every=0)
    return out, counts


def test_tables_match_the_published_mappings():
    # the 894 -> 40 table as found in the public copies (see nyu_mat.py), byte for byte
    assert hashlib.sha256(bytes(NYU894_TO_40)).hexdigest() == (
        "9c75cdc1ff39748751966fe8d8493b1d2ca3acda9ec861b2f70f52221d65a7bd"
    )
    # classes 1..37 are each the image of exactly one raw class; 38..40 are the "other" bins
    counts = np.bincount(NYU894_TO_40, minlength=41)
    assert counts[1:38].tolist() == [1] * 37 and counts[38:].sum() == 894 - 37
    assert len(NYU40_CLASSES) == 40 and len(NYU13_CLASSES) == 13 and len(NYU40_TO_13) == 40
    named = {"wall": "wall", "floor": "floor", "bed": "bed", "ceiling": "ceiling", "books": "books",
             "chair": "chair", "sofa": "sofa", "table": "table", "television": "tv", "window": "window",
             "picture": "picture", "cabinet": "furniture", "pillow": "objects", "door": "wall"}  # fmt: skip
    for c40, c13 in named.items():
        assert NYU13_CLASSES[NYU40_TO_13[NYU40_CLASSES.index(c40)] - 1] == c13, c40
    lut40, lut13 = nyu_label_luts()
    assert lut40[0] == lut13[0] == 255
    for raw, (c40, c13) in KNOWN.items():
        assert (lut40[raw], lut13[raw]) == (c40, c13), raw


def test_converts_images_depth_labels_and_splits(nyu_mat, converted):
    _, images, depths, labels = nyu_mat
    out, counts = converted
    assert counts == dict(images=N, written=4 * N, skipped=0, train=2, val=2)
    for i in range(N):
        img = np.asarray(Image.open(out / "images" / f"{i + 1:06d}.png").convert("RGB"))
        np.testing.assert_array_equal(img, images[i])  # (H, W, 3), no transposition left
    assert tuple(np.asarray(Image.open(out / "images" / "000001.png"))[2, 5]) == (255, 10, 20)

    mm = cv2.imread(str(out / "depth" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm.shape == (H, W)
    assert (mm[0, 0], mm[1, 7], mm[5, 3]) == (0, 1235, 9999)
    np.testing.assert_array_equal(mm, np.round(depths[0].astype(np.float64) * 1000).astype(np.uint16))

    l40 = np.asarray(Image.open(out / "label40" / "000001.png"))
    l13 = np.asarray(Image.open(out / "label13" / "000001.png"))
    assert l40.dtype == np.uint8 and l40.shape == (H, W)
    for j, (c40, c13) in enumerate(KNOWN.values()):
        assert (l40[3, j], l13[3, j]) == (c40, c13)
    assert (l40[labels[0] == 0] == 255).all() and (l13[labels[0] == 0] == 255).all()
    other = np.asarray(Image.open(out / "label40" / "000002.png"))
    assert ((other == 255) == (labels[1] == 0)).all() and other[labels[1] > 0].max() <= 39

    assert (out / "train.txt").read_text() == "000001\n000003\n"
    assert (out / "val.txt").read_text() == "000002\n000004\n"


def test_loader_reads_the_converted_data(converted):
    out, _ = converted
    pipeline = [LoadImageFromFile(), LoadMultiTaskAnnotations()]
    ds = NYUv2Dataset(
        str(out), split="train", label_dir="label40", metainfo=dict(classes=NYU40_CLASSES), pipeline=pipeline
    )
    assert len(ds) == 2 and ds.metainfo["classes"] == NYU40_CLASSES
    results = ds[0]
    assert results["img"].shape == (H, W, 3)
    mm = cv2.imread(str(out / "depth" / "000001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(results["gt_depth_map"], mm / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(
        results["gt_seg_map"], np.asarray(Image.open(out / "label40" / "000001.png"))
    )
    val13 = NYUv2Dataset(str(out), split="val", label_dir="label13")  # the default metainfo: 13 classes
    assert len(val13) == 2


def test_idempotent_and_overwrite(nyu_mat, tmp_path):
    mat = str(nyu_mat[0] / "nyu_depth_v2_labeled.mat")
    out = tmp_path / "out"
    convert_nyu_mat(mat, str(out), log_every=0)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = convert_nyu_mat(mat, str(out), log_every=0)
    assert again["written"] == 0 and again["skipped"] == 4 * N
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamp
    marker = out / "label40" / "000002.png"
    cv2.imwrite(str(marker), np.full((H, W), 7, np.uint8))  # a file already there is kept...
    convert_nyu_mat(mat, str(out), log_every=0)
    assert (np.asarray(Image.open(marker)) == 7).all()
    (out / "depth" / "000003.png").unlink()  # ...a missing one is written...
    assert convert_nyu_mat(mat, str(out), log_every=0)["written"] == 1
    redone = convert_nyu_mat(mat, str(out), overwrite=True, log_every=0)  # ...and overwrite rewrites all
    assert redone["written"] == 4 * N and not (np.asarray(Image.open(marker)) == 7).all()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_bad_inputs_are_named(nyu_mat, tmp_path):
    root, images, depths, labels = nyu_mat
    mat = str(root / "nyu_depth_v2_labeled.mat")
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        convert_nyu_mat(mat, str(tmp_path / "o1"), str(tmp_path / "nope.mat"))
    bad_splits = tmp_path / "splits.mat"
    write_splits_mat(bad_splits, train=[1, 9], test=[2])
    with pytest.raises(ValueError, match=r"trainNdxs has indices \[9\] outside 1\.\.4"):
        convert_nyu_mat(mat, str(tmp_path / "o2"), str(bad_splits))
    renamed = tmp_path / "renamed.mat"
    write_labeled_mat(renamed, images, depths, labels, names=_names({**RAW_NAMES, 21: "floor"}))
    with pytest.raises(ValueError, match="wall"):
        convert_nyu_mat(str(renamed), str(tmp_path / "o3"), str(root / "splits.mat"))
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(Path(mat).read_bytes()[:700])
    with pytest.raises(OSError, match="truncated.mat"):
        convert_nyu_mat(str(truncated), str(tmp_path / "o4"), str(root / "splits.mat"))


def test_splits_v73_copy(tmp_path):
    path = tmp_path / "splits73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB v7.3 stores the column vectors as (1, n)
        f.create_dataset("trainNdxs", data=np.array([[1.0, 3.0]]))
        f.create_dataset("testNdxs", data=np.array([[2.0]]))
    splits = read_nyu_splits(str(path))
    assert splits["train"].tolist() == [1, 3] and splits["val"].tolist() == [2]


def test_cli(nyu_mat, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("convert_nyu", REPO / "scripts" / "convert_nyu.py")
    assert spec is not None and spec.loader is not None
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    root = nyu_mat[0]
    out = tmp_path / "cli"
    assert (
        cli.main(["--mat", str(root / "nyu_depth_v2_labeled.mat"), "--out", str(out), "--log-every", "0"])
        == 0
    )
    assert (out / "val.txt").read_text() == "000002\n000004\n"
    assert cli.main(["--mat", str(tmp_path / "missing.mat"), "--out", str(out)]) == 1
    assert "missing.mat" in capsys.readouterr().err


# ---- scripts/download_data.sh: argument handling and skip logic only (never the network) ----------------------
SCRIPT = REPO / "scripts" / "download_data.sh"


def _run_script(args, tmp_path, **env):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    for tool in ("curl", "wget"):  # any download attempt is recorded and fails
        exe = fake_bin / tool
        exe.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/network.log"\nexit 7\n')
        exe.chmod(0o755)
    full_env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=60
    )


def test_download_script_help_and_arguments(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    shown = _run_script(["--help"], tmp_path)
    assert shown.returncode == 0 and "--data-dir" in shown.stdout and "MTV_DATA_DIR" in shown.stdout
    bad = _run_script(["--frobnicate"], tmp_path)
    assert bad.returncode == 2 and "--frobnicate" in bad.stderr
    assert _run_script(["--only", "coco"], tmp_path).returncode == 1
    assert not (tmp_path / "network.log").exists()


def test_download_script_skips_complete_nyu_files_and_resumes_partial_ones(tmp_path):
    data = tmp_path / "data"
    dl = data / "downloads"
    dl.mkdir(parents=True)
    mat = dl / "nyu_depth_v2_labeled.mat"
    with open(mat, "wb") as f:  # sparse: header + the size of the real file, no disk used
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64")
        f.truncate(2_972_000_000)
    write_splits_mat(dl / "splits.mat", train=[1], test=[2])
    done = _run_script(["--only", "nyu", "--no-convert"], tmp_path, MTV_DATA_DIR=str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("skipping the download") == 2
    assert not (tmp_path / "network.log").exists()

    with open(mat, "r+b") as f:  # an interrupted download: too short -> resumed from <file>.part
        f.truncate(1_000_000)
    resumed = _run_script(["--only", "nyu", "--no-convert", "--data-dir", str(data)], tmp_path)
    assert resumed.returncode == 1 and "re-run to resume" in resumed.stderr
    log = (tmp_path / "network.log").read_text()
    assert "curl" in log and "--continue-at -" in log and "nyu_depth_v2_labeled.mat.part" in log
    assert (dl / "nyu_depth_v2_labeled.mat.part").stat().st_size == 1_000_000  # kept for the next run


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_download_script_voc_md5_stamp(tmp_path):
    """A VOC tar whose md5 does not match is resumed, not trusted; the check names both sums."""
    dl = tmp_path / "data" / "downloads"
    dl.mkdir(parents=True)
    (dl / "VOCtrainval_11-May-2012.tar").write_bytes(b"not the VOC tar")
    run = _run_script(["--only", "voc", "-d", str(tmp_path / "data")], tmp_path)
    assert run.returncode == 1 and "6cd6e144f989b92b3379bac3b3de84fd" in run.stdout
    assert "VOCtrainval_11-May-2012.tar.part" in (tmp_path / "network.log").read_text()
