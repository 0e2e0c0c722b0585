"""mmdet/mmseg blocks in one graph with native ones: routing of partially labelled batches, raw-output decoding,
fp32 losses under autocast, edges checked at build time (dry-run output specs) and ConfigDict train/test cfgs."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData

from multitask_vision.models import GraphError, MultiTaskModel
from multitask_vision.structures import MultiTaskDataSample
from tests.models.openmmlab_cases import (
    DET_TEST_CFG,
    FCN,
    FCOS,
    MMDET_BACKBONE,
    MMDET_NECK,
    MMSEG_BACKBONE,
    SIZE,
    block,
    det_samples,
    inputs,
    mixed_model,
    seg_samples,
)


# ----------------------------------------------------------------------------------------------- routing
def test_partially_labelled_batch_never_feeds_fake_targets():
    """A det-only sample beside a seg-only one: each head sees only its own sample, and its loss equals the
    loss of that sample alone (no background target invented for the missing task)."""
    model = mixed_model().eval()  # BN on running stats: per-sample results do not depend on the batch
    det = det_samples(MultiTaskDataSample, n=1)[0]
    seg = seg_samples(MultiTaskDataSample, n=1)[0]
    x = inputs(2)
    mixed = model(x, [copy.deepcopy(det), copy.deepcopy(seg)], mode="loss")
    det_alone = model(x[:1], [copy.deepcopy(det)], mode="loss")
    seg_alone = model(x[1:], [copy.deepcopy(seg)], mode="loss")
    assert {k.split(".")[0] for k in mixed} == {"detection", "segmentation"}  # depth head did not run
    for k, v in det_alone.items():
        torch.testing.assert_close(mixed[k], v, atol=1e-5, rtol=0)
    for k, v in seg_alone.items():
        torch.testing.assert_close(mixed[k], v, atol=1e-5, rtol=0)


def test_mixed_native_and_openmmlab_graph_trains_and_predicts():
    model = mixed_model()
    samples = det_samples(MultiTaskDataSample, n=1) + seg_samples(MultiTaskDataSample, n=1)
    samples[1].gt_depth_map = PixelData(data=torch.rand(1, *SIZE) * 5 + 0.5)
    samples[1].set_metainfo(dict(tasks=("segmentation", "depth")))
    losses = model(inputs(2), samples, mode="loss")
    assert {k.split(".")[0] for k in losses} == {"detection", "segmentation", "depth"}
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert model.blocks["backbone"].stem[0].weight.grad.abs().sum() > 0
    out = model.eval()(inputs(2), det_samples(MultiTaskDataSample, n=2), mode="predict")
    assert all({"pred_instances", "pred_sem_seg", "pred_depth_map"} <= set(s.keys()) for s in out)


def test_predict_from_raw_outputs_equals_predict():
    """What scores an exported model: each head decodes its raw (tensor-mode) outputs through its adapter's
    predict_from_outputs (mmdet/mmseg predict_by_feat, ours predict_by_feat) exactly as predict() does."""
    model = mixed_model().eval()
    x = inputs(2)
    samples = det_samples(MultiTaskDataSample, n=2, scale=2.0)  # rescaled to a 2x smaller original
    joint = model(x, copy.deepcopy(samples), mode="predict")
    raw = model.tensor(x)
    fields = {"det_head": ("pred_instances", ("bboxes", "scores", "labels")),
              "seg_head": ("pred_sem_seg", ("data",)), "depth_head": ("pred_depth_map", ("data",))}  # fmt: skip
    for head, (field, keys) in fields.items():
        fresh = [MultiTaskDataSample(metainfo=s.metainfo) for s in samples]
        model.adapters[head].predict_from_outputs(model.blocks[head], raw[head], fresh)
        for a, b in zip(fresh, joint, strict=True):
            for key in keys:
                torch.testing.assert_close(getattr(getattr(a, field), key), getattr(getattr(b, field), key))
    assert all(len(s.pred_instances) > 0 for s in joint)  # boxes were really compared
    assert joint[0].pred_sem_seg.data.shape == (1, 32, 32)


def test_head_losses_run_in_fp32_under_autocast():
    """--amp: head losses run with autocast off on float inputs (mmcv's CUDA focal loss has no bf16 kernel)."""
    model = mixed_model().eval()
    seen = []
    head = model.blocks["det_head"]
    orig = head.loss

    def spy(x, samples):
        seen.append(({t.dtype for t in x}, torch.is_autocast_enabled("cpu")))
        return orig(x, samples)

    head.loss = spy
    samples = det_samples(MultiTaskDataSample, n=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = model(inputs(2), copy.deepcopy(samples), mode="loss")
    assert seen == [({torch.float32}, False)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in amp.values())


# ----------------------------------------------------------------------------------------------- bad input
def test_wrong_channels_into_mmdet_head_names_the_edge():
    with pytest.raises(
        GraphError, match=r"edge neck -> det_head: expects in_channels=64 but receives \(32ch/s8"
    ):
        MultiTaskModel(blocks=[
            block("backbone", MMDET_BACKBONE, "mmdet", "img"),
            block("neck", MMDET_NECK, "mmdet", "backbone"),
            block("det_head", FCOS | dict(in_channels=64), "mmdet", "neck", task="detection"),
        ])  # fmt: skip


def test_wrong_in_index_into_mmseg_head_names_the_edge():
    with pytest.raises(
        GraphError, match=r"edge backbone -> seg_head: in_index=5 but the head receives 4 input"
    ):
        MultiTaskModel(blocks=[
            block("backbone", MMSEG_BACKBONE, "mmseg", "img"),
            block("seg_head", FCN | dict(in_index=5), "mmseg", "backbone", task="segmentation"),
        ])  # fmt: skip


def test_wrong_channels_into_mmseg_head_names_the_edge():
    with pytest.raises(GraphError, match=r"edge backbone -> seg_head: expects in_channels=256 .*512"):
        MultiTaskModel(blocks=[
            block("backbone", MMSEG_BACKBONE, "mmseg", "img"),
            block("seg_head", FCN | dict(in_channels=256), "mmseg", "backbone", task="segmentation"),
        ])  # fmt: skip


def test_neck_fed_wrong_levels_fails_at_build():
    with pytest.raises(
        GraphError, match=r"edge backbone -> neck: in_channels\[0\]=64 but input 0 has 128 channels"
    ):
        MultiTaskModel(blocks=[
            block("backbone", MMDET_BACKBONE, "mmdet", "img"),
            block("neck", MMDET_NECK | dict(in_channels=[64, 128, 256]), "mmdet", "backbone"),
            block("det_head", FCOS, "mmdet", "neck", task="detection"),
        ])  # fmt: skip


def test_test_cfg_becomes_configdict():
    model = MultiTaskModel(blocks=[
        block("backbone", MMDET_BACKBONE, "mmdet", "img"),
        block("neck", MMDET_NECK, "mmdet", "backbone"),
        block("det_head", FCOS, "mmdet", "neck", task="detection", test_cfg=DET_TEST_CFG),
    ])  # fmt: skip
    assert isinstance(model.blocks["det_head"].test_cfg, ConfigDict)
    assert model.blocks["det_head"].test_cfg.max_per_img == 50


def test_dry_run_measures_foreign_outputs():
    model = MultiTaskModel(blocks=[
        block("backbone", MMDET_BACKBONE, "mmdet", "img"),
        block("neck", MMDET_NECK, "mmdet", "backbone"),
        block("det_head", FCOS, "mmdet", "neck", task="detection"),
    ])  # fmt: skip
    assert [(s.channels, s.stride) for s in model.specs["backbone"]] == [(128, 8), (256, 16), (512, 32)]
    assert [(s.channels, s.stride) for s in model.specs["neck"]] == [(32, 8), (32, 16), (32, 32), (32, 64)]
    assert model.blocks["backbone"].training  # the dry run left the train/eval state as it was
