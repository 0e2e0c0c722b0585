"""Initialisation of mmdet/mmseg blocks in our graph: their own init_cfg (incl. Pretrained) and init_from
checkpoints of mmdet's models mapped onto blocks by key prefix."""

from __future__ import annotations

import pytest
import torch

from multitask_vision.models import MultiTaskModel
from tests.models.openmmlab_cases import (
    DET_TEST_CFG,
    FCN,
    FCOS,
    MMDET_BACKBONE,
    MMDET_NECK,
    MMSEG_BACKBONE,
    block,
    mixed_model,
    scoped_build,
)


def test_init_weights_applies_every_openmmlab_blocks_init_cfg():
    """The blocks live in a ModuleDict, which mmengine's recursive init_weights does not enter: the model must
    initialise them itself, or FCOS starts without its prior-probability bias (initial focal loss ~10x)."""
    from mmdet.models.utils import multi_apply  # noqa: F401  (mmdet imported: its init helpers registered)
    from mmengine.model import bias_init_with_prob

    model = mixed_model()
    det, seg = model.blocks["det_head"], model.blocks["seg_head"]
    assert not torch.allclose(
        det.conv_cls.bias, torch.full_like(det.conv_cls.bias, bias_init_with_prob(0.01))
    )
    model.init_weights()
    torch.testing.assert_close(
        det.conv_cls.bias, torch.full_like(det.conv_cls.bias, bias_init_with_prob(0.01))
    )
    assert (
        0.005 < float(det.conv_cls.weight.detach().std()) < 0.015
    )  # normal(std=0.01), not PyTorch's default
    assert (
        0.005 < float(seg.conv_seg.weight.detach().std()) < 0.015
        and float(seg.conv_seg.bias.abs().max()) == 0.0
    )
    assert all(getattr(b, "is_init", True) for b in model.blocks.values())
    # the mmseg backbone (ResNetV1c, zero_init_residual=True): each residual branch's last norm starts at 0
    last_norms = [
        blk.norm2
        for layer in model.blocks["backbone"].res_layers
        for blk in getattr(model.blocks["backbone"], layer)
    ]
    assert last_norms and all(bool((n.weight == 0).all()) for n in last_norms)


def test_backbone_init_cfg_pretrained_is_loaded(tmp_path):
    """mmdet's way to start from ImageNet weights, ``init_cfg=dict(type='Pretrained', checkpoint=...)`` on the
    backbone block, loads them at init_weights (it used to be silently ignored)."""
    torch.manual_seed(1)
    source = scoped_build("mmseg", MMSEG_BACKBONE)
    torch.save(source.state_dict(), tmp_path / "backbone.pth")
    torch.manual_seed(0)
    model = MultiTaskModel(blocks=[
        block("backbone", MMSEG_BACKBONE, "mmseg", "img",
              init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "backbone.pth"))),
        block("seg_head", FCN, "mmseg", "backbone", task="segmentation"),
    ])  # fmt: skip
    model.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(model.blocks["backbone"].state_dict()[name], value, msg=name)


# ----------------------------------------------------------------------------------------------- checkpoints
def test_init_from_mmdet_checkpoint_with_prefix_map(tmp_path):
    torch.manual_seed(3)
    detector = scoped_build(
        "mmdet",
        dict(type="FCOS", backbone=MMDET_BACKBONE, neck=MMDET_NECK, bbox_head=FCOS, test_cfg=DET_TEST_CFG),
    )
    path = tmp_path / "fcos_tiny.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": detector.state_dict()}, path)
    torch.manual_seed(4)
    model = MultiTaskModel(
        blocks=[
            block("backbone", MMDET_BACKBONE, "mmdet", "img"),
            block("neck", MMDET_NECK, "mmdet", "backbone"),
            block("det_head", FCOS, "mmdet", "neck", task="detection", test_cfg=DET_TEST_CFG),
            dict(
                name="depth_head",
                type="DepthHead",
                inputs="neck.0",
                task="depth",
                in_channels=32,
                channels=16,
            ),
        ],
        init_from=[
            dict(checkpoint=str(path), prefix_map={"backbone.": "backbone.", "bbox_head.": "det_head."})
        ],
    )
    model.init_weights()
    for k, v in detector.backbone.state_dict().items():
        assert torch.equal(model.blocks["backbone"].state_dict()[k], v), k
    for k, v in detector.bbox_head.state_dict().items():
        assert torch.equal(model.blocks["det_head"].state_dict()[k], v), k
    # the neck was not mapped: it keeps its own initialisation
    assert not torch.equal(model.blocks["neck"].state_dict()["lateral_convs.0.conv.weight"],
                           detector.neck.state_dict()["lateral_convs.0.conv.weight"])  # fmt: skip

    from multitask_vision.models.checkpoint_init import load_block_weights

    report = load_block_weights(
        model.blocks, str(path), {"bbox_head.": "det_head.", "backbone.": "backbone."}
    )
    assert report.missing == [] and report.shape_mismatch == []
    assert any(k.startswith("neck.") for k in report.unexpected)  # neck keys map nowhere
    # mapped onto the wrong block: nothing loads, both sides are reported, strict mode refuses
    bad = load_block_weights(model.blocks, str(path), {"bbox_head.": "depth_head."})
    assert bad.loaded == [] and bad.missing and bad.unexpected
    with pytest.raises(ValueError, match="missing"):
        load_block_weights(model.blocks, str(path), {"bbox_head.": "depth_head."}, strict=True)
    with pytest.raises(ValueError, match="names no block"):
        load_block_weights(model.blocks, str(path), {"bbox_head.": "box_head."})
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_block_weights(model.blocks, str(tmp_path / "nope.pth"), {"bbox_head.": "det_head."})
