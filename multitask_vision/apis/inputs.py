"""What the inferencer reads: image files, folders, globs, numpy arrays (or lists of them), and video frames.

An input named explicitly (a file path, an array) must be usable: a missing or unreadable one is an error that
names it. Files found by listing a folder or expanding a glob are best effort: a file that is not an image
(by its extension) is skipped with a warning, an image that cannot be read is skipped and counted, and a
folder or glob that yields no image at all is an error, never an empty success.
"""

from __future__ import annotations

import glob
import logging
import os
import os.path as osp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mmengine.logging import print_log

from multitask_vision.utils.errors import UserError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CHANNEL_ORDERS = ("bgr", "rgb")


class InputError(UserError):
    """An input that cannot be used: missing, unreadable, not an image, an empty folder; one line naming it."""


@dataclass
class InputItem:
    """One image to run: a file (``path``) or an array (``array``, BGR), and a name unique among the inputs
    (the file stem, or ``array_<i>``) for output files. ``listed``: found in a folder or by a glob, so an
    unreadable file is skipped and counted instead of stopping the run."""

    name: str
    path: str | None = None
    array: np.ndarray | None = None
    listed: bool = False


@dataclass
class Skipped:
    """Inputs left out of a run, with the reason for each (a non-image file, an unreadable image)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, reason: str) -> None:
        self.items.append((what, reason))
        print_log(f"skipped {what}: {reason}", logger="current", level=logging.WARNING)

    def __len__(self) -> int:
        return len(self.items)


def is_video(path: str | os.PathLike) -> bool:
    return osp.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS


def as_bgr(array: Any, where: str, channel_order: str = "bgr") -> np.ndarray:
    """An image array (H, W, 3) in ``channel_order``, or (H, W) / (H, W, 1) grey -> (H, W, 3) BGR."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise InputError(f"{where}: expected an (H, W, 3) image array, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{where}: expected a uint8 or float image array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr[..., ::-1] if channel_order == "rgb" else arr)


def resolve_inputs(inputs: Any, channel_order: str = "bgr") -> tuple[list[InputItem], Skipped]:
    """Expand ``inputs`` (a path, folder, glob, array, or a list of them) into images, in order: a folder's
    images sorted by name (not recursive), a glob's matches sorted. Returns the images and what was skipped."""
    items: list[InputItem] = []
    skipped = Skipped()
    entries = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not entries:
        raise InputError("no input given")
    for i, entry in enumerate(entries):
        if isinstance(entry, np.ndarray):
            items.append(InputItem(f"array_{i}", array=as_bgr(entry, f"input {i}", channel_order)))
        elif isinstance(entry, (str, os.PathLike)):
            items += _expand_path(str(entry), skipped)
        else:
            raise TypeError(
                f"input {i}: expected an image path, a folder, a glob or a numpy array, got {type(entry).__name__}"
            )
    return _unique_names(items), skipped


def _expand_path(path: str, skipped: Skipped) -> list[InputItem]:
    if osp.isdir(path):
        names = sorted(os.listdir(path))
        files = [osp.join(path, n) for n in names if osp.isfile(osp.join(path, n))]
        found = _images_of(files, skipped)
        if not found:
            what = f"{len(files)} file(s), none an image" if files else "it is empty"
            raise InputError(
                f"no image in folder {path}: {what} (image extensions: {', '.join(IMG_EXTENSIONS)})"
            )
        return found
    if glob.has_magic(path):
        matches = sorted(p for p in glob.glob(path, recursive=True) if osp.isfile(p))
        found = _images_of(matches, skipped)
        if not found:
            raise InputError(f"no image matches {path!r} ({len(matches)} other file(s) match)")
        return found
    if not osp.exists(path):
        raise InputError(f"input not found: {path}")
    if is_video(path):
        raise InputError(
            f"{path} is a video: run infer.py on it, or read its frames with apis.video.read_frames"
        )
    return [InputItem(_stem(path), path=path)]


def _images_of(files: Sequence[str], skipped: Skipped) -> list[InputItem]:
    found = []
    for f in files:
        if osp.splitext(f)[1].lower() in IMG_EXTENSIONS:
            found.append(InputItem(_stem(f), path=f, listed=True))
        else:
            skipped.add(f, "not an image file (by its extension)")
    return found


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def _unique_names(items: list[InputItem]) -> list[InputItem]:
    """Output names unique among the inputs: a repeated stem gets ``_1``, ``_2`` ..."""
    used: set[str] = set()
    for item in items:
        name, n = item.name, 0
        while name in used:
            n += 1
            name = f"{item.name}_{n}"
        item.name = name
        used.add(name)
    return items


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    for i in range(0, len(items), size):
        yield items[i : i + size]
