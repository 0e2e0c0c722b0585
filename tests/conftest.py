"""Tiny shared fixtures: a small native block graph and hand-made batches."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.structures import InstanceData, PixelData

from multitask_vision.structures import MultiTaskDataSample

TINY_BLOCKS = [
    dict(name="backbone", type="ResNet", inputs="img", depth=18),
    dict(name="neck", type="FPN", inputs=["backbone.layer3", "backbone.layer4"], in_channels=[256, 512],
         out_channels=32),
    dict(name="det_head", type="AnchorFreeDetHead", inputs="neck", task="detection", num_classes=3,
         in_channels=32, feat_channels=32, stacked_convs=1, strides=(16, 32), regress_ranges=((-1, 32), (32, 1e8))),
    dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=4,
         in_channels=[32, 32], channels=16),
    dict(name="depth_head", type="DepthHead", inputs="neck.0", task="depth", in_channels=32, channels=16),
]  # fmt: skip


@pytest.fixture
def tiny_blocks():
    return copy.deepcopy(TINY_BLOCKS)


def make_sample(tasks, size=(64, 64), seed=0, kinds=None) -> MultiTaskDataSample:
    """A sample labelled for ``tasks`` with GT only for those tasks (as the datasets produce).

    ``kinds`` maps other task names to 'detection' / 'segmentation' / 'depth' (the GT they get).
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    s = MultiTaskDataSample()
    s.set_metainfo(dict(tasks=tuple(tasks), img_shape=size, ori_shape=size, pad_shape=size,
                        batch_input_shape=size, scale_factor=(1.0, 1.0)))  # fmt: skip
    tasks = {(kinds or {}).get(t, t) for t in tasks}
    if "detection" in tasks:
        s.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0]]), labels=torch.tensor([1]))
        s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    if "segmentation" in tasks:
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, h, w), generator=g))
    if "depth" in tasks:
        s.gt_depth_map = PixelData(data=torch.rand(1, h, w, generator=g) * 5 + 0.5)
    return s


@pytest.fixture
def batch():
    """Build ``(inputs, samples)`` from a list of task tuples, one per sample."""

    def build(task_lists, size=(64, 64)):
        samples = [make_sample(t, size, seed=i) for i, t in enumerate(task_lists)]
        inputs = torch.randn(len(samples), 3, *size, generator=torch.Generator().manual_seed(0))
        return inputs, samples

    return build
