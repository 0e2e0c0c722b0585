"""What ``infer.py`` writes: for images, the drawn predictions, ``predictions.jsonl`` and the dense maps; for a
video, an annotated copy (same frame rate and size) and one JSON line per frame.

Layout of ``out``::

    meta.json                 the run: config, model file, heads with their task, class names and palette
    predictions.jsonl         one line per image: file, size (H, W), per head its boxes (xyxy, original pixels),
                              scores, labels and class names, or the path of its map file and a summary
    vis/<image>.png           input | one panel per head (the drawers of visualize.py)
    <head>/<image>.png        a segmentation head's label map, palette PNG (8-bit; 16-bit grey past 256 classes);
                              a depth head's depth, 16-bit PNG in millimetres (the NYU loader's format; 0 = none)
    <head>/<image>.npz        the arrays of a head without a converter (e.g. pred_normals)
    <video>.mp4 / .avi        the annotated video (each frame: the heads' panels tiled at the frame's size)
    <video>.jsonl             one line per frame: index, time, boxes, per-class pixel shares, depth range
    <video>.video.json        the run (as meta.json) and the video's frame rate, size and frame count
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from multitask_vision.apis.inferencer import ImagePrediction, InferenceStats, MultiTaskInferencer
from multitask_vision.apis.inputs import InputError, InputItem
from multitask_vision.apis.results import class_name
from multitask_vision.apis.video import VideoSink, open_video, output_video_path, read_frames
from multitask_vision.datasets.base import voc_colormap
from multitask_vision.visualization.predictions import PredictionPainter

DEPTH_SCALE = 1000.0  # stored value per metre: millimetres, as NYUv2Dataset reads them


def run_meta(inferencer: MultiTaskInferencer, model_file: str) -> dict[str, Any]:
    heads = {}
    for head, task in inferencer.heads.items():
        style = inferencer.styles.get(task, {})
        heads[head] = dict(task=task, classes=list(style.get("classes") or []))
        if style.get("palette"):
            heads[head]["palette"] = [list(c) for c in style["palette"]]
    return dict(
        config=inferencer.cfg.filename, model=model_file, backend=inferencer.backend.description, heads=heads
    )


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    from mmengine.utils import ProgressBar

    return ProgressBar(total)


def infer_images(
    inferencer: MultiTaskInferencer,
    inputs: Any,
    out: Path,
    painter: PredictionPainter,
    *,
    batch_size: int,
    model_file: str,
    progress: bool = True,
) -> InferenceStats:
    """Images (paths, folders, globs) -> ``out`` (see the module docstring). Returns the run's statistics."""
    stats = InferenceStats()
    items = inferencer.resolve(inputs, stats.skipped)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(run_meta(inferencer, model_file), indent=2))
    bar = _progress(len(items), progress and len(items) > batch_size)
    try:
        with open(out / "predictions.jsonl", "w") as lines:
            for batch in inferencer.predict_batches(items, batch_size, stats):
                for pred in batch:
                    lines.write(json.dumps(image_record(inferencer, pred, out)) + "\n")
                    title = f"{pred.name}  {pred.size[1]}x{pred.size[0]}"
                    drawn = painter.strip(pred.image[..., ::-1], pred.samples, title=title)
                    write_png(out / "vis" / f"{pred.name}.png", drawn[..., ::-1])
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            print(flush=True)  # end the progress bar's line
    if not stats.images:
        raise InputError(f"no image could be read ({len(stats.skipped)} skipped): nothing written but {out}")
    return stats


def infer_video(
    inferencer: MultiTaskInferencer,
    path: str,
    out: Path,
    painter: PredictionPainter,
    *,
    batch_size: int,
    model_file: str,
    progress: bool = True,
) -> tuple[InferenceStats, str]:
    """A video -> its annotated copy (same frame rate and frame size) and ``<video>.jsonl`` in ``out``."""
    cap, info = open_video(path)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(run_meta(inferencer, model_file), video=info.__dict__)
    (out / f"{Path(path).stem}.video.json").write_text(json.dumps(meta, indent=2))
    sink = VideoSink(output_video_path(str(out), path), info)
    stats = InferenceStats()
    bar = _progress(info.frames, progress)
    try:
        with open(out / (Path(path).stem + ".jsonl"), "w") as lines:
            for batch in _frame_items(cap, batch_size):
                t0 = time.perf_counter()
                preds = inferencer.predict_items(batch, stats)
                stats.wall += time.perf_counter() - t0
                for pred in preds:
                    index = int(pred.name.rsplit("_", 1)[1])
                    record = dict(
                        frame=index, time_s=round(index / info.fps, 4), **image_record(inferencer, pred)
                    )
                    lines.write(json.dumps(record) + "\n")
                    sink.write(painter.mosaic(pred.image[..., ::-1], pred.samples)[..., ::-1])
                    if bar is not None:
                        bar.update()
    finally:
        cap.release()
        sink.close()
        if bar is not None:
            print(flush=True)
    return stats, sink.path


def _frame_items(cap: Any, batch_size: int) -> Iterator[list[InputItem]]:
    index = 0
    for frames in read_frames(cap, batch_size):
        yield [InputItem(f"frame_{index + i:06d}", array=f) for i, f in enumerate(frames)]
        index += len(frames)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def image_record(inferencer: MultiTaskInferencer, pred: ImagePrediction, out: Path | None = None) -> dict:
    """One image's JSON line; with ``out``, the dense maps are written there and referenced by path."""
    heads = {}
    for head, result in pred.heads.items():
        entry: dict[str, Any] = dict(task=result["task"])
        classes = inferencer.classes(head)
        for key, value in result.items():
            if key in ("task", "classes"):
                continue
            if key == "bboxes":
                entry[key] = np.round(value, 2).tolist()
            elif key == "scores":
                entry[key] = np.round(value, 4).tolist()
            elif key in ("labels", "class_names"):
                entry[key] = list(value.tolist() if isinstance(value, np.ndarray) else value)
            elif key == "label_map":
                entry.update(_label_map(value, classes, _palette(inferencer, head), out, head, pred.name))
            elif key == "depth":
                entry.update(_depth(value, out, head, pred.name))
            else:
                entry[key] = _generic(value, out, head, pred.name, key)
        heads[head] = entry
    return dict(file=pred.path, name=pred.name, size=list(pred.size), heads=heads)


def _palette(inferencer: MultiTaskInferencer, head: str) -> list:
    return list(inferencer.styles.get(inferencer.heads[head], {}).get("palette") or [])


def _label_map(
    labels: np.ndarray, classes: Any, palette: list, out: Path | None, head: str, name: str
) -> dict:
    values, counts = np.unique(labels, return_counts=True)
    present = [
        dict(label=int(v), name=class_name(classes, int(v)), fraction=round(float(c) / labels.size, 4))
        for v, c in zip(values, counts)
    ]
    entry: dict[str, Any] = dict(classes_present=present)
    if out is not None:
        path = out / head / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if labels.max(initial=0) < 256:
            img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.astype(np.uint8).tobytes())
            colours = [tuple(c) for c in palette] + voc_colormap(256)[len(palette) :]
            img.putpalette([v for c in colours[:256] for v in c])
            img.save(path)
        else:
            write_png(path, labels.astype(np.uint16))
        entry["label_map"] = str(path.relative_to(out))
    return entry


def _depth(depth: np.ndarray, out: Path | None, head: str, name: str) -> dict:
    valid = depth[np.isfinite(depth)]
    entry: dict[str, Any] = {
        f"depth_{k}_m": round(float(f(valid)), 4) if valid.size else None
        for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
    }
    if out is not None:
        mm = np.clip(np.round(np.nan_to_num(depth) * DEPTH_SCALE), 0, 65535).astype(np.uint16)
        path = out / head / f"{name}.png"
        write_png(path, mm)
        entry.update(depth_map=str(path.relative_to(out)), depth_scale=DEPTH_SCALE)
    return entry


def _generic(value: Any, out: Path | None, head: str, name: str, key: str) -> Any:
    """A field without a converter: its arrays inline when small, else in ``<head>/<name>.npz``."""
    arrays = value if isinstance(value, dict) else {"value": value}
    small = all(not isinstance(v, np.ndarray) or v.size <= 64 for v in arrays.values())
    if small:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    if out is None:
        return {k: dict(shape=list(v.shape)) for k, v in arrays.items() if isinstance(v, np.ndarray)}
    path = out / head / f"{name}.{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    stored: dict[str, Any] = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray)}
    np.savez_compressed(path, **stored)
    return dict(file=str(path.relative_to(out)))
