"""Synthetic datasets on disk: scenes (:mod:`~multitask_vision.datasets.synthetic_scene`) written in the VOC
and NYU layouts, generated once and reused.

One scene is a function of ``(seed, layout, split, index)`` only, so the same seed gives byte-identical files.
:func:`ensure_synthetic_data` generates a dataset once (atomically, DDP-aware) and reuses it while its
parameters are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import os.path as osp
import shutil
import tempfile
import time
from collections.abc import Sequence

import cv2
import numpy as np
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from PIL import Image

from multitask_vision.datasets.base import voc_colormap
from multitask_vision.datasets.synthetic_scene import (
    SyntheticScene,
    instance_boundary,
    kinect_holes,
    render_scene,
)
from multitask_vision.utils.errors import UserError

GENERATOR_VERSION = 2  # bump whenever a seed stops giving the same files: datasets on disk then regenerate
MANIFEST = "synthetic_manifest.json"
# recorded in every manifest, and only datasets whose manifest names it are reused or replaced: keep it
GENERATOR = "multitask_vision.datasets.synthetic"
LAYOUTS = ("voc", "nyu")
SPLITS = ("train", "val")

_LAYOUT_OPTS: dict[str, dict[str, object]] = {
    "voc": dict(seg_fraction=0.7, min_objects=1, max_objects=6, void_boundary=True, jpeg_quality=90),
    "nyu": dict(min_objects=1, max_objects=6, depth_holes=True, label_dir="labels"),
}


# ---- writers ----------------------------------------------------------------------------------------------------
_VOC_PALETTE = np.asarray(voc_colormap(256), np.uint8).ravel().tolist()


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _encode(ext: str, array: np.ndarray, params: Sequence[int] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {ext} image of shape {array.shape}")
    return buf.tobytes()


def voc_xml(img_id: str, scene: SyntheticScene, segmented: bool, img_suffix: str = ".jpg") -> str:
    """VOC annotation text; boxes 1-based inclusive (``xmin = x0 + 1`` for the 0-based pixel ``x0``). Objects
    whose visible box is one pixel thin are left out: read back (``xml - 1``) they would have no area."""
    h, w = scene.seg.shape
    objs = "".join(
        "\t<object>\n"
        f"\t\t<name>{o.name}</name>\n"
        "\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>{int(o.truncated)}</truncated>\n"
        f"\t\t<difficult>{int(o.difficult)}</difficult>\n"
        "\t\t<bndbox>\n"
        f"\t\t\t<xmin>{o.bbox[0] + 1}</xmin>\n"
        f"\t\t\t<ymin>{o.bbox[1] + 1}</ymin>\n"
        f"\t\t\t<xmax>{o.bbox[2] + 1}</xmax>\n"
        f"\t\t\t<ymax>{o.bbox[3] + 1}</ymax>\n"
        "\t\t</bndbox>\n"
        "\t</object>\n"
        for o in scene.objects
        if o.bbox[2] > o.bbox[0] and o.bbox[3] > o.bbox[1]
    )
    return (
        "<annotation>\n"
        "\t<folder>SyntheticVOC</folder>\n"
        f"\t<filename>{img_id}{img_suffix}</filename>\n"
        "\t<source>\n\t\t<database>multitask_vision synthetic scenes</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>{int(segmented)}</segmented>\n"
        f"{objs}"
        "</annotation>\n"
    )


def write_voc_sample(
    root: str,
    img_id: str,
    scene: SyntheticScene,
    *,
    with_seg: bool = True,
    void_boundary: bool = True,
    jpeg_quality: int = 90,
) -> None:
    """Write ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml`` and (``with_seg``) ``SegmentationClass/<id>.png``."""
    for sub in ("JPEGImages", "Annotations", "SegmentationClass"):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    bgr = np.ascontiguousarray(scene.image[..., ::-1])
    _write_bytes(
        osp.join(root, "JPEGImages", img_id + ".jpg"),
        _encode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, jpeg_quality)),
    )
    _write_bytes(osp.join(root, "Annotations", img_id + ".xml"), voc_xml(img_id, scene, with_seg).encode())
    if with_seg:
        seg = scene.seg.copy()
        if void_boundary:
            seg[instance_boundary(scene.instances)] = 255
        png = Image.frombytes("P", (seg.shape[1], seg.shape[0]), seg.tobytes())
        png.putpalette(_VOC_PALETTE)
        png.save(osp.join(root, "SegmentationClass", img_id + ".png"))


def write_nyu_sample(
    root: str,
    img_id: str,
    scene: SyntheticScene,
    *,
    holes: np.ndarray | None = None,
    label_dir: str = "labels",
) -> None:
    """Write ``images/<id>.png`` (RGB), ``depth/<id>.png`` (uint16 mm, 0 where ``holes``) and ``<label_dir>/<id>.png``."""
    for sub in ("images", "depth", label_dir):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    _write_bytes(
        osp.join(root, "images", img_id + ".png"),
        _encode(".png", np.ascontiguousarray(scene.image[..., ::-1])),
    )
    mm = np.clip(np.round(scene.depth * 1000.0), 1, 65535).astype(np.uint16)
    if holes is not None:
        mm[holes] = 0
    _write_bytes(osp.join(root, "depth", img_id + ".png"), _encode(".png", mm))
    _write_bytes(osp.join(root, label_dir, img_id + ".png"), _encode(".png", scene.seg))


def write_split(path: str, ids: Sequence[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(i + "\n" for i in ids))


# ---- dataset generation -----------------------------------------------------------------------------------------
def scene_rng(seed: int, layout: str, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: independent of every other scene and of the dataset's size."""
    return np.random.default_rng([seed, LAYOUTS.index(layout), SPLITS.index(split), index])


def synthetic_params(
    layout: str, num_train: int, num_val: int, image_size: Sequence[int], seed: int, **opts: object
) -> dict:
    """The full, JSON-normal parameter set of a dataset (defaults filled, unknown options rejected)."""
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    known = _LAYOUT_OPTS[layout]
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise UserError(
            f"unknown option(s) {unknown} for the synthetic {layout!r} layout; known: {sorted(known)}"
        )
    if len(image_size) != 2 or min(int(s) for s in image_size) < 16:
        raise UserError(f"image_size must be (height, width), each >= 16, got {image_size!r}")
    if num_train < 0 or num_val < 0:
        raise UserError(f"num_train/num_val must be >= 0, got {num_train}, {num_val}")
    merged = {**known, **opts}
    if not 1 <= int(merged["min_objects"]) <= int(merged["max_objects"]):  # type: ignore[call-overload]
        raise UserError(
            f"need 1 <= min_objects <= max_objects, got {merged['min_objects']}, {merged['max_objects']}"
        )
    if layout == "voc" and not 0.0 <= float(merged["seg_fraction"]) <= 1.0:  # type: ignore[arg-type]
        raise UserError(f"seg_fraction must be in [0, 1], got {merged['seg_fraction']}")
    params = dict(
        layout=layout,
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=[int(s) for s in image_size],
        seed=int(seed),
        version=GENERATOR_VERSION,
        **merged,
    )
    return json.loads(json.dumps(params, sort_keys=True))


def sample_ids(split: str, num: int) -> list[str]:
    return [f"{split}_{i:06d}" for i in range(num)]


def generate_synthetic(root: str, params: dict, log_every: int | None = None) -> None:
    """Write the dataset described by ``params`` (from :func:`synthetic_params`) into ``root`` (no manifest)."""
    layout, size, seed = params["layout"], params["image_size"], params["seed"]
    total = params["num_train"] + params["num_val"]
    if log_every is None:
        log_every = max(1, total // 10) if total >= 500 else 0
    start, done = time.perf_counter(), 0
    for split in SPLITS:
        ids = sample_ids(split, params[f"num_{split}"])
        with_seg = np.zeros(len(ids), bool)
        if layout == "voc":  # exactly round(n * seg_fraction) images of the split have masks
            chosen = np.random.default_rng([seed, 0, SPLITS.index(split)]).permutation(len(ids))
            with_seg[chosen[: int(round(len(ids) * params["seg_fraction"]))]] = True
        for i, img_id in enumerate(ids):
            rng = scene_rng(seed, layout, split, i)
            scene = render_scene(
                rng, size, min_objects=params["min_objects"], max_objects=params["max_objects"]
            )
            if layout == "voc":
                write_voc_sample(
                    root,
                    img_id,
                    scene,
                    with_seg=bool(with_seg[i]),
                    void_boundary=params["void_boundary"],
                    jpeg_quality=params["jpeg_quality"],
                )
            else:
                holes = kinect_holes(rng, scene) if params["depth_holes"] else None
                write_nyu_sample(root, img_id, scene, holes=holes, label_dir=params["label_dir"])
            done += 1
            if log_every and done % log_every == 0:
                rate = done / max(time.perf_counter() - start, 1e-9)
                print_log(f"synthetic {layout}: {done}/{total} images ({rate:.0f} img/s)", "current")
        if layout == "voc":
            write_split(osp.join(root, "ImageSets", "Main", f"{split}.txt"), ids)
            write_split(
                osp.join(root, "ImageSets", "Segmentation", f"{split}.txt"),
                [i for i, s in zip(ids, with_seg) if s],
            )
        else:
            write_split(osp.join(root, f"{split}.txt"), ids)


def _read_manifest(root: str) -> dict | None:
    try:
        with open(osp.join(root, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR else None


def _is_complete(root: str, params: dict) -> bool:
    manifest = _read_manifest(root)
    if manifest is None or manifest.get("params") != params:
        return False
    split_dir = osp.join(root, "ImageSets", "Main") if params["layout"] == "voc" else root
    return all(osp.isfile(osp.join(split_dir, f"{s}.txt")) for s in SPLITS)


def _replaceable(root: str) -> bool:
    """Only our own datasets (or an empty folder) are ever replaced."""
    return (
        not osp.exists(root) or (osp.isdir(root) and not os.listdir(root)) or _read_manifest(root) is not None
    )


def _check_replaceable(root: str) -> None:
    if not _replaceable(root):
        raise UserError(
            f"{root} exists and was not written by ensure_synthetic_data (no {MANIFEST}); refusing to replace it"
        )


def _generate_atomic(root: str, params: dict) -> None:
    _check_replaceable(root)
    parent, name = osp.split(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    trash = []
    try:
        start = time.perf_counter()
        generate_synthetic(tmp, params)
        manifest = dict(generator=GENERATOR, params=params)
        with open(osp.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        elapsed = time.perf_counter() - start
        total = params["num_train"] + params["num_val"]
        for _ in range(10):
            if _is_complete(root, params):
                print_log(
                    f"synthetic {params['layout']}: another process wrote {root} first; using it", "current"
                )
                return
            if osp.exists(root):
                if not _replaceable(root):
                    raise RuntimeError(
                        f"{root} was replaced by foreign data while generating; not touching it"
                    )
                old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
                trash.append(old)
                try:
                    os.rename(root, osp.join(old, name))
                except FileNotFoundError:
                    pass
            try:
                os.rename(tmp, root)
            except OSError:
                continue  # someone created root meanwhile: check again
            break
        else:
            raise RuntimeError(f"could not move the generated dataset into {root} (concurrent writers?)")
        print_log(
            f"synthetic {params['layout']}: {total} images in {elapsed:.1f} s "
            f"({total / max(elapsed, 1e-9):.0f} img/s) -> {root}",
            "current",
        )
    finally:
        for path in [tmp, *trash]:
            shutil.rmtree(path, ignore_errors=True)


def ensure_synthetic_data(
    root: str | os.PathLike,
    layout: str = "voc",
    num_train: int = 200,
    num_val: int = 50,
    image_size: Sequence[int] = (128, 128),
    seed: int = 0,
    **opts: object,
) -> str:
    """Make ``root`` hold the synthetic dataset of these parameters; return ``root``.

    Nothing is written when ``root`` already holds it (``synthetic_manifest.json`` records the parameters).
    Otherwise the dataset is generated into a temporary folder beside ``root`` and renamed into place, so a
    reader never sees half a dataset and racing processes are safe. Under torch.distributed rank 0 generates
    while the other ranks wait at a barrier (a rank that still does not see the data, e.g. on another node's
    local disk, then generates its own copy).

    Args:
        layout: ``'voc'`` or ``'nyu'`` (see :mod:`~multitask_vision.datasets.voc` / ``nyu`` for the layouts).
        image_size: ``(height, width)``.
        **opts: VOC: ``seg_fraction`` (share of images with a SegmentationClass mask, 0.7), ``min_objects`` (1),
            ``max_objects`` (6), ``void_boundary`` (255 on a 1-px instance edge, True), ``jpeg_quality`` (90).
            NYU: ``min_objects``, ``max_objects``, ``depth_holes`` (Kinect-like invalid pixels, True),
            ``label_dir`` ('labels').
    """
    root = osp.abspath(os.fspath(root))
    params = synthetic_params(layout, num_train, num_val, image_size, seed, **opts)
    rank, world = get_dist_info()
    if rank == 0:
        _check_replaceable(root)
        if _is_complete(root, params):
            print_log(f"synthetic {layout}: {root} is up to date", "current", logging.DEBUG)
        else:
            print_log(
                f"synthetic {layout}: generating {num_train} train + {num_val} val images of "
                f"{params['image_size'][0]}x{params['image_size'][1]} (seed {seed}) into {root}",
                "current",
            )
            _generate_atomic(root, params)
    if world > 1:
        barrier()
        if not _is_complete(root, params):
            _generate_atomic(root, params)
    return root
