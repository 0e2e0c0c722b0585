"""Batch assembly: normalise and pad images, and pad each task's dense ground truth to match.

Images are padded to a multiple of ``pad_size_divisor`` (bottom/right, like mmdet and mmseg); the padded area
of every per-pixel training ground truth (a ``gt_*`` ``PixelData`` field) gets the value ``dense_gt_pad_values``
gives its field, one its loss ignores, so padding never becomes a training target: by default 255 (the ignore
index) for ``gt_sem_seg`` and 0 (invalid) for ``gt_depth_map``; a new task adds its own field. Every sample gets
``batch_input_shape`` and ``pad_shape`` metainfo, which mmdet/mmseg heads and our heads read.
"""

from __future__ import annotations

import torch.nn.functional as F
from mmengine.model import ImgDataPreprocessor
from mmengine.structures import PixelData

from multitask_vision.registry import MODELS

# per-pixel ground-truth field -> the value its padding gets, unless dense_gt_pad_values says otherwise
DEFAULT_DENSE_GT_PAD_VALUES: dict[str, float] = {"gt_sem_seg": 255, "gt_depth_map": 0.0}
# keys this preprocessor no longer takes -> the field to give dense_gt_pad_values instead
_REMOVED_KEYS = {"seg_pad_value": "gt_sem_seg", "depth_pad_value": "gt_depth_map"}


@MODELS.register_module()
class MultiTaskDataPreprocessor(ImgDataPreprocessor):
    """ImageNet-normalising preprocessor for multi-task batches (defaults: RGB mean/std, BGR input)."""

    def __init__(
        self,
        mean: tuple[float, ...] = (123.675, 116.28, 103.53),
        std: tuple[float, ...] = (58.395, 57.12, 57.375),
        pad_size_divisor: int = 32,
        pad_value: float = 0,
        bgr_to_rgb: bool = True,
        dense_gt_pad_values: dict[str, float] | None = None,
        non_blocking: bool = False,
        **removed: object,
    ) -> None:
        for key in removed:
            if key in _REMOVED_KEYS:
                raise ValueError(
                    f"data_preprocessor.{key} was removed: write "
                    f"dense_gt_pad_values=dict({_REMOVED_KEYS[key]}={removed[key]!r})"
                )
        if removed:
            raise TypeError(f"MultiTaskDataPreprocessor got unexpected keyword arguments {sorted(removed)}")
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            bgr_to_rgb=bgr_to_rgb,
            non_blocking=non_blocking,
        )
        # ground-truth field -> padding value (a value that the head's loss ignores)
        self.dense_gt_pad_values: dict[str, float] = dict(DEFAULT_DENSE_GT_PAD_VALUES)
        for field, value in (dense_gt_pad_values or {}).items():
            if not field.startswith("gt_"):
                raise ValueError(f"data_preprocessor.dense_gt_pad_values: {field!r} is not a gt_* field")
            self.dense_gt_pad_values[field] = value

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, samples = data["inputs"], data.get("data_samples")
        if not samples:
            return data
        # Dense GT is padded only for training (losses); for evaluation it stays at the original size,
        # where predictions are compared with it.
        h, w = inputs.shape[-2:]
        for sample in samples:
            sample.set_metainfo(dict(batch_input_shape=(h, w), pad_shape=(h, w)))
            if not training:
                continue
            for field in sample.keys():
                pixel = getattr(sample, field)
                if not (field.startswith("gt_") and isinstance(pixel, PixelData)):
                    continue
                gh, gw = pixel.data.shape[-2:]
                if (gh, gw) == (h, w):
                    continue
                where = sample.metainfo.get("img_path", "a sample")
                if gh > h or gw > w:
                    raise ValueError(
                        f"{field} of {where} is {gh}x{gw}, "
                        f"larger than its padded image {h}x{w}: the pipeline resized the image but not it"
                    )
                if field not in self.dense_gt_pad_values:
                    raise ValueError(
                        f"{field} of {where} must be padded from {gh}x{gw} to {h}x{w} but has no padding value: "
                        f"set data_preprocessor.dense_gt_pad_values={{'{field}': <a value its loss ignores>}}"
                    )
                # PixelData fixes its (H, W) once set: a new one, every map of it padded alike
                value = self.dense_gt_pad_values[field]
                padded = {k: F.pad(v, (0, w - gw, 0, h - gh), value=value) for k, v in pixel.items()}
                setattr(sample, field, PixelData(metainfo=pixel.metainfo, **padded))
        return data
