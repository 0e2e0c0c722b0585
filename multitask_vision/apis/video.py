"""Video in and out through OpenCV: frames of a file (mp4, avi, ...) in batches, and an annotated copy written
with the same frame rate and frame size."""

from __future__ import annotations

import os.path as osp
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from multitask_vision.apis.inputs import InputError

# container -> codec OpenCV's FFmpeg build writes into it
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    width: int
    height: int
    frames: int  # as the container declares it (0: unknown)


def open_video(path: str) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open ``path``; a missing or unreadable file is an error naming it."""
    if not osp.isfile(path):
        raise InputError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise InputError(f"cannot read video {path}: OpenCV decodes no frame from it")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    frames = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    h, w = first.shape[:2]
    return cap, VideoInfo(path, fps, w, h, frames)


def read_frames(cap: cv2.VideoCapture, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Batches of BGR frames until the end of the stream."""
    batch: list[np.ndarray] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        batch.append(frame)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class VideoSink:
    """An OpenCV ``VideoWriter`` of ``info``'s frame rate and size, codec chosen by the file's extension
    (``.mp4``: mp4v, ``.avi``: MJPG); frames are BGR of exactly that size."""

    def __init__(self, path: str, info: VideoInfo) -> None:
        ext = osp.splitext(path)[1].lower()
        if ext not in FOURCC:
            raise ValueError(f"cannot write video {path}: use one of {', '.join(FOURCC)}")
        self.size = (info.width, info.height)
        self.path = path
        self.writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*FOURCC[ext]), info.fps, self.size)
        if not self.writer.isOpened():
            raise OSError(f"OpenCV cannot write video {path} (codec {FOURCC[ext]})")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise ValueError(
                f"frame of {frame.shape[1]}x{frame.shape[0]} for a {self.size[0]}x{self.size[1]} video"
            )
        self.writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def output_video_path(out_dir: str, source: str) -> str:
    """``<out_dir>/<name>`` in the source's container, or ``.mp4`` when OpenCV cannot write that one."""
    stem, ext = osp.splitext(osp.basename(source))
    return osp.join(out_dir, stem + (ext.lower() if ext.lower() in FOURCC else ".mp4"))
