"""Task-aware transforms: mmdet's/mmcv's transforms, extended so depth maps follow the image too.

Pipeline results carry, for each labelled task kind, ``gt_bboxes``/``gt_bboxes_labels``/``gt_ignore_flags``
(mmdet), ``gt_seg_map`` (mmdet/mmseg) and ``gt_depth_map`` (float metres, 0 = invalid). A field is present
only when the sample is labelled for it: an unlabelled task never gets an empty placeholder.
"""

from __future__ import annotations

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadAnnotations as MMDetLoadAnnotations
from mmdet.datasets.transforms import RandomFlip as MMDetRandomFlip
from mmdet.datasets.transforms import Resize as MMDetResize
from mmengine import fileio
from mmengine.structures import InstanceData, PixelData

from multitask_vision.registry import TRANSFORMS
from multitask_vision.structures import MultiTaskDataSample


@TRANSFORMS.register_module()
class LoadMultiTaskAnnotations(MMDetLoadAnnotations):
    """Load every annotation the sample has: boxes+labels (``instances``), a class-index map
    (``seg_map_path``, decoded with Pillow so palette PNGs give indices) and a depth map (``depth_map_path``,
    16-bit PNG divided by the sample's ``depth_scale``). A missing or unreadable file raises ``OSError``
    naming it.
    """

    def __init__(self, box_type: str | None = "hbox", imdecode_backend: str = "pillow", backend_args=None):
        super().__init__(
            with_bbox=True,
            with_label=True,
            with_seg=True,
            box_type=box_type,
            imdecode_backend=imdecode_backend,
            backend_args=backend_args,
        )

    def transform(self, results: dict) -> dict:
        if "instances" in results:
            self._load_bboxes(results)
            self._load_labels(results)
        if "seg_map_path" in results:
            path = results["seg_map_path"]
            try:
                self._load_seg_map(results)
            except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
                raise OSError(f"cannot read segmentation map {path}: {e}") from e
            if results["gt_seg_map"] is None or results["gt_seg_map"].ndim != 2:
                raise OSError(f"segmentation map {path} is not a single-channel class-index image")
        if "depth_map_path" in results:
            results["gt_depth_map"] = self._load_depth(
                results["depth_map_path"], results.get("depth_scale", 1000.0)
            )
        return results

    def _load_depth(self, path: str, scale: float) -> np.ndarray:
        try:
            raw = mmcv.imfrombytes(
                fileio.get(path, backend_args=self.backend_args), flag="unchanged", backend="cv2"
            )
        except Exception as e:  # noqa: BLE001
            raise OSError(f"cannot read depth map {path}: {e}") from e
        if raw is None or raw.ndim != 2:
            raise OSError(f"depth map {path} is not a single-channel image")
        return raw.astype(np.float32) / float(scale)


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
