"""Convert NYU Depth v2's labelled set (``nyu_depth_v2_labeled.mat``) to the NYU layout of
:mod:`multitask_vision.datasets.nyu`.

Inputs (both from http://horatio.cs.nyu.edu/mit/silberman/):

* ``nyu_depth_v2/nyu_depth_v2_labeled.mat``: MATLAB v7.3, i.e. HDF5 (read with h5py). MATLAB stores arrays
  column-major, so h5py sees every array with its axes reversed: ``images`` (N, 3, W, H) uint8, ``depths``
  (N, W, H) float metres (the in-painted maps; ``rawDepths`` keeps the Kinect holes as 0), ``labels``
  (N, W, H) uint16 with 0 = unlabelled and 1..894 = the raw classes of ``names``. Image ``i`` is
  ``images[i].transpose(2, 1, 0)`` -> (H=480, W=640, 3).
* ``indoor_seg_sup/splits.mat``: MATLAB v5 (read with :func:`scipy.io.loadmat`; a v7.3 copy is read with
  h5py): ``trainNdxs`` (795) and ``testNdxs`` (654), 1-based image indices.

Output (``out_dir``)::

    images/<id>.png    RGB
    depth/<id>.png     uint16 millimetres, 0 = invalid
    label40/<id>.png   uint8 0..39 into NYU40_CLASSES, 255 = unlabelled
    label13/<id>.png   uint8 0..12 into NYU13_CLASSES, 255 = unlabelled
    train.txt          the 795 ``trainNdxs``
    val.txt            the 654 ``testNdxs`` (the standard evaluation split)

``<id>`` is the 1-based image index zero-padded to 6 digits (``000001``). Existing outputs are kept unless
``overwrite=True``; every file is written under a temporary name and renamed, so an interrupted run never
leaves a truncated PNG that a later run would skip.

Class maps. The 894 -> 40 table is Gupta et al. 2013 ("Perceptual Organization and Recognition of Indoor
Scenes from RGB-D Images"), distributed as ``classMapping40.mat`` (``mapClass``); the 13 classes are the task
of Couprie et al. 2013 ("Indoor Semantic Segmentation using depth information"), distributed as
``class13Mapping.mat`` (``classMapping13``), which maps the *40* classes to 13 (so 894 -> 13 goes through 40).
Neither .mat is text, so the tables below come from public code that embeds them, cross-checked:

* 894 -> 40: identical in all 894 entries in github.com/StevenHickson/Adapnet-Shape
  ``dataset/nyu40_dataset.py`` (``label_nyu_mapping``) and in two other public NYUv2 loaders found by code
  search (a 3D Perception Lab NYU-to-point-cloud script, ``map_classes_``; an mmseg-based depth dataset,
  ``mapping_894_to_40``). Each 40-class id 1..37 is the image of exactly one raw class (raw 21 ``wall`` -> 1,
  raw 11 ``floor`` -> 2, ...); 38..40 are the "other structure / furniture / prop" bins.
* 40 -> 13: github.com/howard-mahe/nyudv2_class_mapping ``utils/map40to13.m`` and its README table,
  identical to ``map_to_20`` in Adapnet-Shape ``dataset/nyu13_dataset.py``; github.com/VainF/nyuv2-python-toolkit
  (copy: h-0-0/nyuv2-meta-data ``extract_nyu_v2.py``) applies ``class13Mapping.mat`` the same way, to 40-class
  labels. Names and order: that README (bed, books, ceiling, chair, floor, furniture, objects, picture, sofa,
  table, TV, wall, window), i.e. :data:`~multitask_vision.datasets.nyu.NYU13_CLASSES`.
"""

from __future__ import annotations

import os
import os.path as osp
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from mmengine.logging import print_log

from multitask_vision.datasets.nyu import NYU13_CLASSES, NYU40_CLASSES

__all__ = [
    "NYU13_CLASSES",
    "NYU40_CLASSES",
    "NYU40_TO_13",
    "NYU894_TO_40",
    "convert_nyu_mat",
    "depth_to_millimetres",
    "nyu_label_luts",
    "read_nyu_splits",
]

# the 40 classes in label order 1..40 (stored as 0..39): classMapping40.mat's ``className`` (which spells
# "refridgerator")
_NYU894_TO_40_TEXT = """
    40 40 3 22 5 40 12 38 40 40 2 39 40 40 26 40 24 40 7 40 1 40 40 34 38 29 40 8 40 40
    40 40 38 40 40 14 40 38 40 40 40 15 39 40 30 40 40 39 40 39 38 40 38 40 37 40 38 38 9 40
    40 38 40 11 38 40 40 40 40 40 40 40 40 40 40 40 40 40 38 13 40 40 6 40 23 40 39 10 16 40
    40 40 40 38 40 40 40 40 40 40 40 40 40 38 40 39 40 40 40 40 39 38 40 40 40 40 40 40 18 40
    40 19 28 33 40 40 40 40 40 40 40 40 40 38 27 36 40 40 40 40 21 40 20 35 40 40 40 40 40 40
    40 40 38 40 40 40 4 32 40 40 39 40 39 40 40 40 40 40 17 40 40 25 40 39 40 40 40 40 40 40
    40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 39 40 40 40 40 40 40
    40 40 40 39 38 38 40 40 39 40 39 40 38 39 38 40 40 40 40 40 40 40 40 40 40 39 40 38 40 40
    38 38 40 40 40 40 40 40 40 40 40 40 40 40 40 38 40 40 40 40 40 39 40 40 40 40 40 40 40 40
    40 40 40 40 40 40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 39 40 40 40 38 40 40 39 40 40
    38 40 40 40 40 40 40 40 40 40 40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40
    31 40 40 40 40 40 40 40 38 40 40 38 39 39 40 40 40 40 40 40 40 40 40 38 40 39 40 40 39 40
    40 40 38 40 40 40 40 40 40 40 40 38 39 40 40 40 40 40 40 38 40 40 40 40 40 40 40 40 40 40
    40 38 39 40 40 40 40 40 40 40 39 40 40 40 40 40 40 38 40 40 40 38 40 39 40 40 40 39 39 40
    40 40 40 40 40 40 40 40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 39 39 40 40 39 39 40 40
    40 40 38 40 40 38 39 39 40 39 40 39 38 40 40 40 40 40 40 40 40 40 40 40 39 40 38 40 39 40
    40 40 40 40 39 39 40 40 40 40 40 40 39 39 40 40 38 39 39 40 40 40 40 40 40 40 40 40 39 39
    40 40 40 40 39 40 40 40 40 40 39 40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 39
    38 40 40 40 40 40 40 40 39 38 39 40 38 39 40 39 40 39 40 40 40 40 40 40 40 40 38 40 40 40
    40 40 38 40 40 39 40 40 40 39 40 38 40 40 40 40 40 40 40 40 38 40 40 40 40 40 40 40 40 40
    40 40 40 40 40 40 40 39 38 40 40 38 40 40 38 40 40 40 40 40 40 40 40 40 39 40 40 40 40 40
    40 40 40 40 40 40 40 40 40 40 40 38 40 40 38 40 40 40 40 40 40 40 40 40 40 40 38 38 38 40
    40 40 38 40 40 40 38 38 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 38 40 40 40 40
    40 40 40 40 40 40 40 40 40 38 40 38 39 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40
    40 40 40 40 40 40 40 40 40 40 40 40 40 39 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40
    40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 40 39 40 39 40 40 40 40 38 38 40 40
    40 38 40 40 40 40 40 40 40 40 40 40 40 40 40 40 39 40 40 39 40 40 39 39 40 40 40 40 40 40
    40 40 39 39 39 40 40 40 40 39 40 40 40 40 40 40 40 40 39 40 40 40 40 40 39 40 40 40 40 40
    40 40 40 40 40 40 40 40 40 38 40 40 40 40 40 40 40 39 40 40 38 40 39 40 40 40 40 38 40 40
    40 40 40 38 40 40 40 40 40 40 40 39 40 40 40 40 40 40 40 40 40 39 40 40
"""
NYU894_TO_40: tuple[int, ...] = tuple(int(v) for v in _NYU894_TO_40_TEXT.split())

# entry i = 13-class id (1..13) of 40-class id i + 1 (class13Mapping.mat; sources above)
NYU40_TO_13: tuple[int, ...] = (
    12, 5, 6, 1, 4, 9, 10, 12, 13, 6,  # wall floor cabinet bed chair sofa table door window bookshelf
    8, 6, 13, 10, 6, 13, 6, 7, 7, 5,  # picture counter blinds desk shelves curtain dresser pillow mirror floor-mat
    7, 3, 2, 6, 11, 7, 7, 7, 7, 7,  # clothes ceiling books fridge television paper towel shower-curtain box whiteboard
    7, 6, 7, 7, 7, 7, 7, 7, 6, 7,  # person night-stand toilet sink lamp bathtub bag other-struct other-furn other-prop
)  # fmt: skip

NUM_RAW_CLASSES = 894
IGNORE_INDEX = 255
# raw ids whose names pin the numbering the tables assume (checked against the file's ``names`` when present)
NAME_ANCHORS = {3: "cabinet", 4: "ceiling", 5: "chair", 11: "floor", 19: "table", 21: "wall"}
SPLIT_KEYS = {"train": "trainNdxs", "val": "testNdxs"}
OUT_DIRS = ("images", "depth", "label40", "label13")

if len(NYU894_TO_40) != NUM_RAW_CLASSES or set(NYU894_TO_40) != set(range(1, len(NYU40_CLASSES) + 1)):
    raise ImportError("corrupt NYU894_TO_40 table")  # guards hand edits of the table above
if len(NYU40_TO_13) != len(NYU40_CLASSES) or set(NYU40_TO_13) != set(range(1, len(NYU13_CLASSES) + 1)):
    raise ImportError("corrupt NYU40_TO_13 table")


def nyu_label_luts() -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables raw label (0..894) -> 40-class index and -> 13-class index, uint8, 0 (unlabelled) -> 255."""
    to40 = np.asarray(NYU894_TO_40, np.int64)
    lut40 = np.full(NUM_RAW_CLASSES + 1, IGNORE_INDEX, np.uint8)
    lut40[1:] = to40 - 1
    lut13 = np.full(NUM_RAW_CLASSES + 1, IGNORE_INDEX, np.uint8)
    lut13[1:] = np.asarray(NYU40_TO_13, np.int64)[to40 - 1] - 1
    return lut40, lut13


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (rounded); non-finite or <= 0 -> 0 (invalid); clipped at 65535."""
    depth = np.asarray(depth_m, np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.zeros(depth.shape, np.uint16)
    mm[valid] = np.clip(np.round(depth[valid] * 1000.0), 0, 65535).astype(np.uint16)
    return mm


def _is_hdf5(path: str) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def read_nyu_splits(path: str) -> dict[str, np.ndarray]:
    """``{'train': trainNdxs, 'val': testNdxs}`` from ``splits.mat``, as int64 arrays of 1-based indices."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"missing NYUv2 split file {path} (splits.mat)")
    raw: dict[str, Any]
    if _is_hdf5(path):  # a MATLAB v7.3 copy
        import h5py

        with h5py.File(path, "r") as f:
            raw = {k: f[k][()] for k in SPLIT_KEYS.values() if k in f}
    else:
        try:
            from scipy.io import loadmat  # a dependency of mmdet and mmseg
        except ImportError as e:
            raise ImportError(f"reading {path} (MATLAB v5) needs scipy: {e}") from e
        try:
            raw = loadmat(path, variable_names=list(SPLIT_KEYS.values()))
        except Exception as e:  # noqa: BLE001 - any parser failure is a bad file
            raise OSError(f"cannot read NYUv2 split file {path}: {e}") from e
    splits = {}
    for split, key in SPLIT_KEYS.items():
        if key not in raw:
            found = sorted(k for k in raw if not k.startswith("__"))
            raise ValueError(f"NYUv2 split file {path} has no {key!r} (found: {found})")
        values = np.asarray(raw[key], np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"NYUv2 split file {path}: {key} is not a list of integer indices")
        splits[split] = values.astype(np.int64)
    overlap = np.intersect1d(splits["train"], splits["val"])
    if overlap.size:
        raise ValueError(
            f"NYUv2 split file {path}: {overlap.size} indices are in both trainNdxs and testNdxs"
        )
    return splits


def _read_names(f: Any) -> list[str] | None:
    """The ``names`` cell array (MATLAB char arrays behind HDF5 object references), or None if absent."""
    if "names" not in f:
        return None
    refs = np.asarray(f["names"][()]).ravel()
    return ["".join(chr(int(c)) for c in np.asarray(f[ref][()]).ravel()) for ref in refs]


def _check_names(names: Sequence[str], mat_path: str) -> None:
    if len(names) != NUM_RAW_CLASSES:
        raise ValueError(
            f"{mat_path}: 'names' has {len(names)} classes; the 40/13-class tables are for the "
            f"{NUM_RAW_CLASSES} classes of nyu_depth_v2_labeled.mat"
        )
    wrong = {i: names[i - 1] for i, name in NAME_ANCHORS.items() if names[i - 1] != name}
    if wrong:
        expected = {i: NAME_ANCHORS[i] for i in wrong}
        raise ValueError(
            f"{mat_path}: raw classes {wrong} are not named as the 40/13-class tables assume ({expected}); "
            "is this nyu_depth_v2_labeled.mat?"
        )


def _dataset(f: Any, key: str, mat_path: str, ndim: int) -> Any:
    if key not in f:
        raise ValueError(f"{mat_path} has no {key!r} dataset (found: {sorted(f.keys())})")
    ds = f[key]
    if ds.ndim != ndim:
        raise ValueError(f"{mat_path}: {key!r} has shape {ds.shape}, expected {ndim} axes")
    return ds


def _replace_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_png(path: str, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"cv2 could not encode {path} (array {array.shape} {array.dtype})")
    _replace_atomically(path, buf.tobytes())


def convert_nyu_mat(
    mat_path: str,
    out_dir: str,
    splits_path: str | None = None,
    *,
    overwrite: bool = False,
    depth_key: str = "depths",
    log_every: int = 100,
) -> dict[str, int]:
    """Convert ``nyu_depth_v2_labeled.mat`` (+ ``splits.mat``) into ``out_dir`` in the NYU layout.

    Args:
        mat_path: the labelled set (MATLAB v7.3 / HDF5).
        out_dir: output folder (created).
        splits_path: ``splits.mat``; default: ``splits.mat`` beside ``mat_path``.
        overwrite: rewrite outputs that already exist (default: keep them).
        depth_key: ``'depths'`` (in-painted, the usual target) or ``'rawDepths'`` (Kinect holes kept as 0).
        log_every: print progress every this many images (0: only the summary).

    Returns:
        counts: ``images`` (in the file), ``written`` and ``skipped`` (output PNGs), ``train``, ``val`` (ids).
    """
    import h5py

    if splits_path is None:
        splits_path = osp.join(osp.dirname(osp.abspath(mat_path)), "splits.mat")
    if not osp.isfile(mat_path):
        raise FileNotFoundError(f"missing NYUv2 labelled set {mat_path} (nyu_depth_v2_labeled.mat)")
    splits = read_nyu_splits(splits_path)
    if not _is_hdf5(mat_path):
        raise OSError(
            f"{mat_path} is not a MATLAB v7.3 (HDF5) file: truncated, or not nyu_depth_v2_labeled.mat"
        )
    lut40, lut13 = nyu_label_luts()
    written = skipped = 0
    start = time.perf_counter()
    try:
        f = h5py.File(mat_path, "r", rdcc_nbytes=64 << 20)  # a chunk cache for chunks spanning images
    except OSError as e:
        raise OSError(f"cannot open {mat_path} (truncated download?): {e}") from e
    with f:
        images, depths, labels = _checked_datasets(f, mat_path, depth_key, splits, splits_path)
        n, _, w, h = images.shape
        for sub in OUT_DIRS:
            os.makedirs(osp.join(out_dir, sub), exist_ok=True)
        print_log(f"NYUv2: converting {n} images of {h}x{w} from {mat_path} into {out_dir}", "current")
        for i in range(n):
            img_id = f"{i + 1:06d}"
            paths = {sub: osp.join(out_dir, sub, img_id + ".png") for sub in OUT_DIRS}
            todo = {sub for sub, p in paths.items() if overwrite or not osp.isfile(p)}
            skipped += len(OUT_DIRS) - len(todo)
            _convert_image(i, todo, paths, (images, depths, labels), (lut40, lut13), mat_path)
            written += len(todo)
            if log_every and (i + 1) % log_every == 0:
                rate = (i + 1) / max(time.perf_counter() - start, 1e-9)
                print_log(f"NYUv2: {i + 1}/{n} images ({rate:.1f} img/s)", "current")
    counts = dict(images=n, written=written, skipped=skipped)
    for split, idx in splits.items():
        _replace_atomically(osp.join(out_dir, f"{split}.txt"), "".join(f"{j:06d}\n" for j in idx).encode())
        counts[split] = int(idx.size)
    print_log(
        f"NYUv2: {n} images -> {out_dir} ({written} files written, {skipped} already there; "
        f"train {counts['train']}, val {counts['val']}) in {time.perf_counter() - start:.1f} s",
        "current",
    )
    return counts


def _checked_datasets(
    f: Any, mat_path: str, depth_key: str, splits: dict[str, np.ndarray], splits_path: str
) -> tuple[Any, Any, Any]:
    """The ``images`` (N, 3, W, H), depth (N, W, H) and ``labels`` (N, W, H) datasets of the open file, their
    shapes, class names and the split indices checked against each other (one-line errors naming the file)."""
    images = _dataset(f, "images", mat_path, 4)
    depths = _dataset(f, depth_key, mat_path, 3)
    labels = _dataset(f, "labels", mat_path, 3)
    n, channels, w, h = images.shape
    if channels != 3 or depths.shape != (n, w, h) or labels.shape != (n, w, h):
        raise ValueError(
            f"{mat_path}: inconsistent shapes images {images.shape}, {depth_key} {depths.shape}, "
            f"labels {labels.shape} (expected (N, 3, W, H), (N, W, H), (N, W, H))"
        )
    names = _read_names(f)
    if names is None:
        print_log(f"{mat_path} has no 'names': class numbering not checked", "current")
    else:
        _check_names(names, mat_path)
    for split, idx in splits.items():
        bad = idx[(idx < 1) | (idx > n)]
        if bad.size:
            raise ValueError(
                f"{splits_path}: {SPLIT_KEYS[split]} has indices {bad[:5].tolist()} outside 1..{n} "
                f"(the number of images in {mat_path})"
            )
    return images, depths, labels


def _convert_image(
    i: int, todo: set[str], paths: dict[str, str], data: tuple[Any, Any, Any], luts: tuple, mat_path: str
) -> None:
    """Write the outputs in ``todo`` of image ``i`` (0-based): RGB, depth in millimetres, 40- and 13-class maps."""
    images, depths, labels = data

    def read(ds: Any) -> np.ndarray:
        try:
            return np.asarray(ds[i])
        except OSError as e:  # h5py's messages do not name the file
            raise OSError(f"cannot read {ds.name[1:]!r} of image {i + 1} from {mat_path}: {e}") from e

    if "images" in todo:
        rgb = read(images).astype(np.uint8).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
        _write_png(paths["images"], np.ascontiguousarray(rgb[..., ::-1]))  # cv2 writes BGR
    if "depth" in todo:
        _write_png(paths["depth"], depth_to_millimetres(read(depths).T))  # (H, W)
    if todo & {"label40", "label13"}:
        raw = read(labels).T.astype(np.int64)  # (H, W), 0..894
        if raw.size and (raw.min() < 0 or raw.max() > NUM_RAW_CLASSES):
            raise ValueError(
                f"{mat_path}: labels of image {i + 1} outside 0..{NUM_RAW_CLASSES} "
                f"(min {raw.min()}, max {raw.max()})"
            )
        for sub, lut in zip(("label40", "label13"), luts):
            if sub in todo:
                _write_png(paths[sub], lut[raw])
