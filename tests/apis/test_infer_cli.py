"""infer.py end to end (through its main): a folder of images -> drawings, predictions.jsonl, palette label maps
and millimetre depth PNGs that match the inferencer's predictions; a video written here with OpenCV -> an
annotated video of the same frame count, size and rate, one JSON line per frame; one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from multitask_vision.apis import MultiTaskInferencer
from tests.apis.conftest import CHECKPOINT, ONNX
from tests.apis.test_inferencer import VAL_IMAGES
from tests.compression.conftest import TINY


def run_infer(args, capsys) -> str:
    import infer

    infer.main([str(TINY), *args])
    return capsys.readouterr().out


def cli_error(args, capsys) -> str:
    import infer

    with pytest.raises(SystemExit) as e:
        infer.main([str(TINY), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and not any("Traceback" in line for line in err)
    return err[-1]


def test_folder_of_images(ws, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in VAL_IMAGES[3:6]:
        shutil.copy(p, folder / Path(p).name)
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    printed = run_infer(
        ["--checkpoint", CHECKPOINT, "--input", str(folder), "--output", str(out), "--batch-size", "2"],
        capsys,
    )
    assert "3 images (1 skipped); mean per image: preprocess" in printed and "images/s" in printed
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    names = ["val_000000", "val_000001", "val_000003"]  # sorted by file name
    assert [r["name"] for r in lines] == names
    assert sorted(p.stem for p in (out / "vis").glob("*.png")) == sorted(names)
    drawn = cv2.imread(str(out / "vis" / "val_000003.png"))
    assert drawn.shape[0] > 256 and drawn.shape[1] > 4 * 256  # input + 3 heads' panels of 256 px, keys
    meta = json.loads((out / "meta.json").read_text())
    assert meta["heads"]["det_head"]["classes"] == ["box", "ball", "cone", "ring"]

    # the written predictions are the inferencer's (score >= 0.3, as infer.py's default --score-thr)
    ref = MultiTaskInferencer(str(TINY), CHECKPOINT, device="cpu", score_thr=0.3)(
        sorted(map(str, folder.glob("*.*g")))
    )
    for line, r in zip(lines, ref):
        assert line["size"] == [64, 64] and line["file"] == r["path"]
        det = line["heads"]["det_head"]
        np.testing.assert_allclose(det["bboxes"], r["heads"]["det_head"]["bboxes"], atol=0.01)
        assert det["class_names"] == r["heads"]["det_head"]["class_names"]
        assert all(s >= 0.3 for s in det["scores"])
        seg = line["heads"]["seg_head"]
        png = Image.open(out / seg["label_map"])
        assert png.mode == "P" and png.getpalette()[3:6] == [128, 0, 0]  # class 1: the sources' palette
        np.testing.assert_array_equal(np.asarray(png), r["heads"]["seg_head"]["label_map"])
        assert {c["name"] for c in seg["classes_present"]} <= {"background", "box", "ball", "cone", "ring"}
        depth = line["heads"]["depth_head"]
        mm = cv2.imread(str(out / depth["depth_map"]), cv2.IMREAD_UNCHANGED)
        assert mm.dtype == np.uint16 and depth["depth_scale"] == 1000.0
        np.testing.assert_allclose(mm / 1000.0, r["heads"]["depth_head"]["depth"], atol=5.1e-4)  # mm


def write_video(path: Path, frames: int, size: tuple[int, int], fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(VAL_IMAGES[i % len(VAL_IMAGES)]), size))
    writer.release()


def test_video_keeps_frame_count_size_and_rate(ws, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_video(video, frames=5, size=(80, 48), fps=7.0)
    out = tmp_path / "out"
    printed = run_infer(
        [
            "--model",
            ONNX,
            "--input",
            str(video),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--heads",
            "det_head",
            "seg_head",
        ],
        capsys,
    )
    assert "5 frames; mean per image" in printed
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 5 and all(f.shape == (48, 80, 3) for f in frames)
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[2]["time_s"] == pytest.approx(2 / 7.0, abs=1e-3)
    assert all(set(r["heads"]) == {"det_head", "seg_head"} and r["size"] == [48, 80] for r in lines)
    assert (
        "classes_present" in lines[0]["heads"]["seg_head"]
        and "label_map" not in lines[0]["heads"]["seg_head"]
    )
    info = json.loads((out / "clip.video.json").read_text())["video"]
    assert (info["width"], info["height"], info["frames"]) == (80, 48, 5)


def test_errors_are_one_line(ws, tmp_path, capsys):
    assert cli_error(
        ["--checkpoint", CHECKPOINT, "--input", "nowhere.jpg", "--out", str(tmp_path)], capsys
    ) == ("error: input not found: nowhere.jpg")
    (tmp_path / "empty").mkdir()
    msg = cli_error(
        ["--checkpoint", CHECKPOINT, "--input", str(tmp_path / "empty"), "--out", str(tmp_path)], capsys
    )
    assert (
        msg
        == f"error: no image in folder {tmp_path / 'empty'}: it is empty (image extensions: .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp, .ppm, .pgm)"
    )
    msg = cli_error(
        ["--checkpoint", CHECKPOINT, "--input", "missing.avi", "--out", str(tmp_path / "o")], capsys
    )
    assert msg == "error: video not found: missing.avi"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    msg = cli_error(["--checkpoint", CHECKPOINT, "--input", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert msg == f"error: cannot read video {bad}: OpenCV decodes no frame from it"
    msg = cli_error(
        [
            "--model",
            ONNX,
            "--input",
            VAL_IMAGES[0],
            "--out",
            str(tmp_path),
            "--cfg-options",
            "model.blocks.3.name=x",
        ],
        capsys,
    )
    assert msg.startswith(f"error: {ONNX} does not match ") and "it outputs 'seg_head'" in msg
    msg = cli_error(["--checkpoint", "missing.pth", "--input", VAL_IMAGES[0], "--out", str(tmp_path)], capsys)
    assert msg == "error: checkpoint not found: missing.pth"
