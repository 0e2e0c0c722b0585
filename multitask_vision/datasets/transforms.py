"""Task-aware transforms: mmdet's/mmcv's transforms, extended so depth maps follow the image too.

Pipeline results carry, for each labelled task kind, ``gt_bboxes``/``gt_bboxes_labels``/``gt_ignore_flags``
(mmdet), ``gt_seg_map`` (mmdet/mmseg) and ``gt_depth_map`` (float metres, 0 = invalid). A field is present
only when the sample is labelled for it: an unlabelled task never gets an empty placeholder.
"""

from __future__ import annotations

import logging

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmdet.datasets.transforms import LoadAnnotations as MMDetLoadAnnotations
from mmdet.datasets.transforms import PhotoMetricDistortion as MMDetPhotoMetricDistortion
from mmdet.datasets.transforms import RandomCrop as MMDetRandomCrop
from mmdet.datasets.transforms import RandomFlip as MMDetRandomFlip
from mmdet.datasets.transforms import Resize as MMDetResize
from mmengine import fileio
from mmengine.logging import print_log
from mmengine.structures import InstanceData, PixelData

from multitask_vision.registry import TRANSFORMS
from multitask_vision.structures import MultiTaskDataSample
from multitask_vision.utils.errors import DataError


def _why_unreadable(data: bytes) -> str:
    """Why a decoder gave up on these bytes (looked at only after it did): a JPEG or PNG cut short lacks the
    marker it ends with; anything else is corrupt or not an image."""
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]:
        return "truncated (the JPEG has no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated (the PNG has no IEND chunk)"
    return "corrupt or not an image"


def _read(path: str, what: str, backend_args) -> bytes:
    try:
        return fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        raise DataError(f"missing {what} {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e}") from None


def _decode(data: bytes, path: str, what: str, flag: str, backend: str) -> np.ndarray:
    try:
        out = mmcv.imfrombytes(data, flag=flag, backend=backend)
    except Exception:  # noqa: BLE001 - any decoder failure is a bad file, diagnosed from its bytes
        out = None
    if out is None:
        raise DataError(f"cannot decode {what} {path}: {_why_unreadable(data)}")
    return out


@TRANSFORMS.register_module()
class LoadMultiTaskImage(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments), with files checked: a missing, truncated or undecodable
    image raises :class:`~multitask_vision.utils.errors.DataError` naming the file (the source's
    ``skip_bad=True`` skips such samples instead). Gray and RGBA files come out as 3 channels (gray replicated,
    alpha dropped: ``color_type='color'``, the default); any other channel count is an error. No check decodes
    twice: a failed decode is diagnosed from the bytes already read."""

    def transform(self, results: dict) -> dict:
        path = results["img_path"]
        img = _decode(_read(path, "image", self.backend_args), path, "image", self.color_type,
                      self.imdecode_backend)  # fmt: skip
        if img.ndim != 3 or img.shape[2] != 3:
            channels = 1 if img.ndim == 2 else img.shape[2]
            raise DataError(
                f"image {path} has {channels} channel(s), the model takes 3 (color_type={self.color_type!r}; "
                "'color' converts gray and RGBA images)"
            )
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadMultiTaskAnnotations(MMDetLoadAnnotations):
    """Load every annotation the sample has: boxes+labels (``instances``), a class-index map
    (``seg_map_path``, decoded with Pillow so palette PNGs give indices) and a depth map (``depth_map_path``,
    16-bit PNG divided by the sample's ``depth_scale``), and check the maps as they come (a pass over the decoded
    array, no second decode). Raises :class:`~multitask_vision.utils.errors.DataError` naming the file when a map
    is missing, truncated or undecodable, has more than one channel, is not the size of the image, holds a class
    value outside the source's classes (``num_seg_classes`` of the sample; 255 = unlabelled is allowed), or has
    no labelled / valid pixel at all. With ``skip_bad=True`` the sample is skipped instead (training only:
    mmengine's dataset then draws another one), with a warning that names the file and counts the skips (the
    source's own ``skip_bad`` does the same for every check of the sample).
    """

    def __init__(
        self,
        box_type: str | None = "hbox",
        imdecode_backend: str = "pillow",
        backend_args=None,
        skip_bad: bool = False,
    ):
        self.skip_bad = skip_bad
        self.num_skipped = 0
        super().__init__(
            with_bbox=True,
            with_label=True,
            with_seg=True,
            box_type=box_type,
            imdecode_backend=imdecode_backend,
            backend_args=backend_args,
        )

    def transform(self, results: dict) -> dict | None:
        try:
            return self._load(results)
        except DataError as e:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            print_log(f"skipped a sample ({self.num_skipped} so far in this worker): {e}", logger="current",
                      level=logging.WARNING)  # fmt: skip
            return None

    def _load(self, results: dict) -> dict:
        if "instances" in results:
            self._load_bboxes(results)
            self._load_labels(results)
        if "seg_map_path" in results:
            path = results["seg_map_path"]
            data = _read(path, "segmentation map", self.backend_args)
            seg = _decode(data, path, "segmentation map", "unchanged", self.imdecode_backend).squeeze()
            if seg.ndim != 2:
                raise DataError(f"segmentation map {path} is not a single-channel class-index image")
            results["gt_seg_map"] = self._check_labels(seg, path, results.get("num_seg_classes"))
            results["ignore_index"] = self.ignore_index
            self._check_size(results, seg, path)
        if "depth_map_path" in results:
            path = results["depth_map_path"]
            raw = _decode(_read(path, "depth map", self.backend_args), path, "depth map", "unchanged", "cv2")
            if raw.ndim != 2:
                raise DataError(f"depth map {path} is not a single-channel image")
            if not raw.any():
                raise DataError(f"depth map {path} has no valid pixel (all 0): nothing to learn depth from")
            self._check_size(results, raw, path)
            results["gt_depth_map"] = raw.astype(np.float32) / float(results.get("depth_scale", 1000.0))
        return results

    def _check_labels(self, seg: np.ndarray, path: str, num_classes: int | None) -> np.ndarray:
        labelled = seg != self.ignore_index
        if not labelled.any():
            raise DataError(f"segmentation map {path} has no labelled pixel (all {self.ignore_index})")
        if num_classes is not None and int(seg[labelled].max()) >= num_classes:
            values = np.unique(seg[labelled & (seg >= num_classes)])
            shown = ", ".join(str(v) for v in values[:5].tolist()) + (", ..." if len(values) > 5 else "")
            raise DataError(
                f"segmentation map {path} holds value(s) {shown}: the source has {num_classes} classes "
                f"(0..{num_classes - 1}; {self.ignore_index} = unlabelled)"
            )
        return seg

    @staticmethod
    def _check_size(results: dict, array: np.ndarray, path: str) -> None:
        """A map must have the image's size (as decoded, ``ori_shape``; else the source's ``height``/``width``):
        padded into a corner, a smaller one would supervise the wrong pixels."""
        shape = results.get("ori_shape") or (results.get("height"), results.get("width"))
        if None not in shape and tuple(array.shape[:2]) != tuple(shape):
            (h, w), (ih, iw) = array.shape[:2], shape
            raise DataError(f"{path} is {w}x{h} pixels but its image {results.get('img_path')} is {iw}x{ih}")


@TRANSFORMS.register_module()
class MultiTaskResize(MMDetResize):
    """mmdet's ``Resize`` (image, boxes, seg map) plus the depth map, resized with nearest neighbour so that
    invalid (0) pixels never blend into valid depths."""

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        if results.get("gt_depth_map") is not None:
            h, w = results["img_shape"][:2]
            results["gt_depth_map"] = mmcv.imresize(results["gt_depth_map"], (w, h), interpolation="nearest")
        return results


@TRANSFORMS.register_module()
class MultiTaskRandomFlip(MMDetRandomFlip):
    """mmdet's ``RandomFlip`` (image, boxes, seg map) plus the depth map."""

    def _flip(self, results: dict) -> None:
        super()._flip(results)
        if results.get("gt_depth_map") is not None:
            results["gt_depth_map"] = mmcv.imflip(
                results["gt_depth_map"], direction=results["flip_direction"]
            )


@TRANSFORMS.register_module()
class PackMultiTaskInputs(BaseTransform):
    """Pack the image as a (3, H, W) tensor and the ground truth into a :class:`MultiTaskDataSample`.

    Ignored boxes (``difficult`` in VOC) go to ``ignored_instances``, as mmdet does.
    """

    DEFAULT_META_KEYS = (
        "img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction",
        "tasks", "source", "seg_map_path", "depth_map_path",
    )  # fmt: skip

    def __init__(self, meta_keys: tuple[str, ...] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # (3, H, W)
        sample = MultiTaskDataSample()
        if "gt_bboxes" in results:
            boxes = results["gt_bboxes"]
            boxes = boxes.tensor if hasattr(boxes, "tensor") else torch.as_tensor(boxes)
            boxes = boxes.float().reshape(-1, 4)
            labels = torch.as_tensor(results["gt_bboxes_labels"], dtype=torch.long).reshape(-1)
            ignore = torch.as_tensor(results.get("gt_ignore_flags", np.zeros(len(labels))), dtype=torch.bool)
            sample.gt_instances = InstanceData(bboxes=boxes[~ignore], labels=labels[~ignore])
            sample.ignored_instances = InstanceData(bboxes=boxes[ignore], labels=labels[ignore])
        if results.get("gt_seg_map") is not None:
            seg = np.ascontiguousarray(results["gt_seg_map"]).astype(np.int64)
            sample.gt_sem_seg = PixelData(data=torch.from_numpy(seg)[None])  # (1, H, W)
        if results.get("gt_depth_map") is not None:
            depth = np.ascontiguousarray(results["gt_depth_map"]).astype(np.float32)
            sample.gt_depth_map = PixelData(data=torch.from_numpy(depth)[None])  # (1, H, W)
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta.setdefault("scale_factor", (1.0, 1.0))  # no Resize in the pipeline: image at original size
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(meta_keys={self.meta_keys})"


@TRANSFORMS.register_module()
class MultiTaskRandomCrop(MMDetRandomCrop):
    """mmdet's ``RandomCrop`` (image, boxes, seg map) plus the depth map, cropped with the same window.

    Boxes are translated and, with ``bbox_clip_border=True`` (default), clipped to the crop; boxes left
    outside it are dropped with their labels and ignore flags. A crop that keeps no box returns ``None``
    (mmengine then draws another sample) unless ``allow_negative_crop=True``, which keeps such crops, e.g. so
    a detection + segmentation sample still trains its segmentation. Samples without boxes (depth / seg only)
    are always cropped.
    """

    def _crop_data(self, results: dict, crop_size: tuple[int, int], allow_negative_crop: bool) -> dict | None:
        before = results.get("homography_matrix")
        cropped = super()._crop_data(results, crop_size, allow_negative_crop)
        if cropped is None or cropped.get("gt_depth_map") is None:
            return cropped
        # mmdet draws the offset inside _crop_data; it records it (only) as the translation it composes onto
        # ``homography_matrix``: undo the previous transforms' part to read it back
        step = np.asarray(cropped["homography_matrix"], np.float64)
        if before is not None:
            step = step @ np.linalg.inv(np.asarray(before, np.float64))
        x0, y0 = int(round(-step[0, 2])), int(round(-step[1, 2]))
        h, w = cropped["img"].shape[:2]
        cropped["gt_depth_map"] = cropped["gt_depth_map"][y0 : y0 + h, x0 : x0 + w]
        return cropped


@TRANSFORMS.register_module()
class MultiTaskPhotoMetricDistortion(MMDetPhotoMetricDistortion):
    """mmdet's ``PhotoMetricDistortion`` under our name: brightness, contrast, saturation, hue and channel swap
    of the image only (it returns a float32 image); boxes, seg maps and depth maps are left untouched, so it
    needs no task-aware extension."""
