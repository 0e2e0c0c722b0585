"""Parity: mmdet/mmseg blocks inside our graph behave exactly as inside mmdet's and mmseg's own models.

Same weights (copied across), same inputs and samples: the loss dicts must agree value by value and the
predictions must be identical. This is what proves the adapters call the heads' own loss()/predict(), so
every configured loss, assigner, sampler, train_cfg and test_cfg is honoured.
"""

from __future__ import annotations

import pytest
import torch
from mmdet.structures import DetDataSample
from mmseg.structures import SegDataSample

from multitask_vision.models import MultiTaskModel
from multitask_vision.structures import MultiTaskDataSample
from tests.models.openmmlab_cases import (
    DET_TEST_CFG,
    FCN,
    FCOS,
    MMDET_BACKBONE,
    MMDET_NECK,
    MMSEG_BACKBONE,
    RETINA,
    RETINA_TRAIN_CFG,
    UPER,
    assert_same_losses,
    block,
    det_samples,
    inputs,
    scoped_build,
    seg_samples,
)


# ----------------------------------------------------------------------------------------------- mmdet
@pytest.mark.parametrize(
    "head, train_cfg",
    [(FCOS, None), (RETINA, RETINA_TRAIN_CFG)],
    ids=["FCOSHead", "RetinaHead"],
)
def test_mmdet_dense_head_parity(head, train_cfg):
    torch.manual_seed(0)
    detector = scoped_build(
        "mmdet",
        dict(type="RetinaNet" if head is RETINA else "FCOS", backbone=MMDET_BACKBONE, neck=MMDET_NECK,
             bbox_head=head, train_cfg=train_cfg, test_cfg=DET_TEST_CFG),
    )  # fmt: skip
    cfgs = dict(test_cfg=DET_TEST_CFG) | (dict(train_cfg=train_cfg) if train_cfg else {})
    ours = MultiTaskModel(
        blocks=[
            block("backbone", MMDET_BACKBONE, "mmdet", "img"),
            block("neck", MMDET_NECK, "mmdet", "backbone"),
            block("det_head", head, "mmdet", "neck", task="detection", **cfgs),
        ]
    )
    ours.blocks["backbone"].load_state_dict(detector.backbone.state_dict())
    ours.blocks["neck"].load_state_dict(detector.neck.state_dict())
    ours.blocks["det_head"].load_state_dict(detector.bbox_head.state_dict())
    x = inputs(3)

    detector.train(), ours.train()
    their_losses = detector.loss(x, det_samples(DetDataSample))
    our_losses = ours(x, det_samples(MultiTaskDataSample), mode="loss")
    assert_same_losses(our_losses, their_losses, "detection")
    assert all(v > 0 for k, v in our_losses.items() if "loss_cls" in k)

    # predictions, rescaled to an original image twice smaller
    detector.eval(), ours.eval()
    with torch.no_grad():
        theirs = detector.predict(x, det_samples(DetDataSample, scale=2.0), rescale=True)
    mine = ours(x, det_samples(MultiTaskDataSample, scale=2.0), mode="predict")
    for a, b in zip(mine, theirs):
        assert len(b.pred_instances) > 0
        torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores, atol=1e-6, rtol=0)
        assert torch.equal(a.pred_instances.labels, b.pred_instances.labels)
        assert a.pred_instances.bboxes[:, 2:].max() <= 32.0 + 1e-4  # clipped to the 32x32 original


# ----------------------------------------------------------------------------------------------- mmseg
@pytest.mark.parametrize("head", [FCN, UPER], ids=["FCNHead", "UPerHead"])
def test_mmseg_decode_head_parity(head):
    torch.manual_seed(0)
    segmentor = scoped_build(
        "mmseg",
        dict(type="EncoderDecoder", backbone=MMSEG_BACKBONE, decode_head=head, train_cfg=dict(),
             test_cfg=dict(mode="whole")),
    )  # fmt: skip
    ours = MultiTaskModel(
        blocks=[
            block("backbone", MMSEG_BACKBONE, "mmseg", "img"),
            block("seg_head", head, "mmseg", "backbone", task="segmentation"),
        ]
    )
    ours.blocks["backbone"].load_state_dict(segmentor.backbone.state_dict())
    ours.blocks["seg_head"].load_state_dict(segmentor.decode_head.state_dict())
    x = inputs(2)

    segmentor.train(), ours.train()
    torch.manual_seed(1)  # the heads' dropout draws the same masks in both
    their_losses = segmentor.loss(x, seg_samples(SegDataSample))
    torch.manual_seed(1)
    our_losses = ours(x, seg_samples(MultiTaskDataSample), mode="loss")
    assert_same_losses(our_losses, their_losses, "segmentation", "decode.")
    if head is FCN:  # both losses of the configured list really ran
        assert {"segmentation.loss_ce", "segmentation.loss_dice"} <= set(our_losses)

    segmentor.eval(), ours.eval()
    with torch.no_grad():
        theirs = segmentor.predict(x, seg_samples(SegDataSample, scale=2.0))
    mine = ours(x, seg_samples(MultiTaskDataSample, scale=2.0), mode="predict")
    for a, b in zip(mine, theirs):
        assert a.pred_sem_seg.data.shape == (1, 32, 32)
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data, atol=1e-5, rtol=0)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
