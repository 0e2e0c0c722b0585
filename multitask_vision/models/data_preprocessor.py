"""Batch assembly: normalise and pad images, and pad each task's dense ground truth to match.

Images are padded to a multiple of ``pad_size_divisor`` (bottom/right, like mmdet and mmseg); the padded
area of a training segmentation map gets ``seg_pad_value`` (the ignore index) and of a depth map
``depth_pad_value`` (0 = invalid), so padding never becomes a training target. Every sample gets ``batch_input_shape`` and
``pad_shape`` metainfo, which mmdet/mmseg heads and our heads read.
"""

from __future__ import annotations

import torch.nn.functional as F
from mmengine.model import ImgDataPreprocessor

from multitask_vision.registry import MODELS

# data-sample fields holding per-pixel ground truth, and the value their padding gets (by preprocessor arg)
DENSE_GT_FIELDS = {"gt_sem_seg": "seg_pad_value", "gt_depth_map": "depth_pad_value"}


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
        seg_pad_value: int = 255,
        depth_pad_value: float = 0.0,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            bgr_to_rgb=bgr_to_rgb,
            non_blocking=non_blocking,
        )
        self.seg_pad_value = seg_pad_value
        self.depth_pad_value = depth_pad_value

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
            for field, pad_arg in DENSE_GT_FIELDS.items():
                if field in sample:
                    pixel = getattr(sample, field)
                    gh, gw = pixel.data.shape[-2:]
                    if (gh, gw) != (h, w):
                        if gh > h or gw > w:
                            raise ValueError(
                                f"{field} of {sample.metainfo.get('img_path', 'a sample')} is {gh}x{gw}, "
                                f"larger than its padded image {h}x{w}: the pipeline resized the image but not it"
                            )
                        pixel.data = F.pad(pixel.data, (0, w - gw, 0, h - gh), value=getattr(self, pad_arg))
        return data
