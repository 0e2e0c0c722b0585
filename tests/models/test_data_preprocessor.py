"""MultiTaskDataPreprocessor: images padded to the divisor, every dense ground truth padded to match with a
value its loss ignores, evaluation GT left at its size, and clear errors."""

from __future__ import annotations

import pytest
import torch
from mmengine.structures import PixelData

from multitask_vision.models.data_preprocessor import MultiTaskDataPreprocessor
from multitask_vision.structures import MultiTaskDataSample


def batch(h=50, w=60, **fields):
    sample = MultiTaskDataSample(metainfo=dict(img_path="a.jpg"))
    for name, data in fields.items():
        setattr(sample, name, PixelData(data=data))
    return dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)], data_samples=[sample])


def test_training_pads_every_dense_gt_with_its_own_value():
    pre = MultiTaskDataPreprocessor(pad_size_divisor=32, dense_gt_pad_values=dict(gt_normals=0.0))
    seg = torch.randint(0, 5, (1, 50, 60))
    depth = torch.rand(1, 50, 60) + 1
    normals = torch.nn.functional.normalize(torch.randn(3, 50, 60), dim=0)
    out = pre(batch(gt_sem_seg=seg, gt_depth_map=depth, gt_normals=normals), training=True)
    assert out["inputs"].shape == (1, 3, 64, 64)
    s = out["data_samples"][0]
    assert s.metainfo["batch_input_shape"] == (64, 64) and s.metainfo["pad_shape"] == (64, 64)
    assert s.gt_sem_seg.data.shape == (1, 64, 64) and s.gt_depth_map.data.shape == (1, 64, 64)
    assert s.gt_normals.data.shape == (3, 64, 64)
    assert torch.equal(s.gt_sem_seg.data[:, :50, :60], seg) and (s.gt_sem_seg.data[:, 50:] == 255).all()
    assert (s.gt_sem_seg.data[:, :, 60:] == 255).all() and s.gt_sem_seg.data.dtype == seg.dtype
    assert (s.gt_depth_map.data[:, 50:] == 0).all() and torch.equal(s.gt_depth_map.data[:, :50, :60], depth)
    assert (s.gt_normals.data[:, :, 60:] == 0).all() and torch.equal(s.gt_normals.data[:, :50, :60], normals)


def test_evaluation_keeps_gt_at_its_size():
    pre = MultiTaskDataPreprocessor(pad_size_divisor=32)
    out = pre(batch(gt_sem_seg=torch.zeros(1, 50, 60, dtype=torch.long)), training=False)
    assert out["inputs"].shape[-2:] == (64, 64) and out["data_samples"][0].gt_sem_seg.data.shape == (
        1,
        50,
        60,
    )


def test_dense_gt_without_a_padding_value_is_named():
    pre = MultiTaskDataPreprocessor(pad_size_divisor=32)
    with pytest.raises(ValueError, match=r"gt_normals of a.jpg must be padded from 50x60 to 64x64 .*"
                                         r"dense_gt_pad_values=\{'gt_normals'"):  # fmt: skip
        pre(batch(gt_normals=torch.zeros(3, 50, 60)), training=True)
    # already at the padded size: nothing to pad, no value needed
    pre(batch(64, 64, gt_normals=torch.zeros(3, 64, 64)), training=True)
    with pytest.raises(ValueError, match="'normals' is not a gt_\\* field"):
        MultiTaskDataPreprocessor(dense_gt_pad_values=dict(normals=0.0))


def test_gt_larger_than_the_image_names_the_file():
    pre = MultiTaskDataPreprocessor(pad_size_divisor=32)
    with pytest.raises(
        ValueError, match="gt_depth_map of a.jpg is 80x60, larger than its padded image 64x64"
    ):
        pre(batch(gt_depth_map=torch.zeros(1, 80, 60)), training=True)


def test_one_spelling_of_the_padding_values():
    pre = MultiTaskDataPreprocessor(dense_gt_pad_values=dict(gt_sem_seg=0))  # overrides only that default
    assert pre.dense_gt_pad_values == {"gt_sem_seg": 0, "gt_depth_map": 0.0}
    out = pre(batch(gt_sem_seg=torch.ones(1, 50, 60, dtype=torch.long)), training=True)
    assert (out["data_samples"][0].gt_sem_seg.data[:, 50:] == 0).all()
    with pytest.raises(ValueError, match=r"data_preprocessor.seg_pad_value was removed: write "
                                         r"dense_gt_pad_values=dict\(gt_sem_seg=254\)"):  # fmt: skip
        MultiTaskDataPreprocessor(seg_pad_value=254)
    from multitask_vision.models import MultiTaskModel

    blocks = [dict(name="backbone", type="ResNet", inputs="img", depth=18)]
    with pytest.raises(ValueError, match=r"depth_pad_value was removed: .*dict\(gt_depth_map=0.0\)"):
        MultiTaskModel(
            blocks=blocks, data_preprocessor=dict(type="MultiTaskDataPreprocessor", depth_pad_value=0.0)
        )
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['pad_sise_divisor'\]"):
        MultiTaskDataPreprocessor(pad_sise_divisor=32)
