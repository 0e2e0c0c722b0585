"""Shared cases of the OpenMMLab tests: tiny mmdet/mmseg configs, samples of both kinds and a mixed graph."""

from __future__ import annotations

import copy

import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData

import multitask_vision
from multitask_vision.models import MultiTaskModel
from multitask_vision.models.block_types import register_openmmlab_modules

multitask_vision.register_all_modules()
register_openmmlab_modules()

SIZE = (64, 64)
MMDET_BACKBONE = dict(
    type="ResNet", depth=18, out_indices=(1, 2, 3), norm_cfg=dict(type="BN"), norm_eval=True
)
MMDET_NECK = dict(type="FPN", in_channels=[128, 256, 512], out_channels=32, num_outs=4,
                  add_extra_convs="on_output", relu_before_extra_convs=True)  # fmt: skip
DET_TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.01, nms=dict(type="nms", iou_threshold=0.5),
                    max_per_img=50)  # fmt: skip
FCOS = dict(
    type="FCOSHead", num_classes=3, in_channels=32, stacked_convs=1, feat_channels=32, strides=[8, 16, 32, 64],
    regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)), norm_cfg=dict(type="GN", num_groups=8),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
)  # fmt: skip
RETINA = dict(
    type="RetinaHead", num_classes=3, in_channels=32, stacked_convs=1, feat_channels=32,
    anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=2, ratios=[0.5, 1.0, 2.0],
                          strides=[8, 16, 32, 64]),
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="SmoothL1Loss", beta=0.11, loss_weight=1.0),
)  # fmt: skip
RETINA_TRAIN_CFG = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
    sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False,
)  # fmt: skip

MMSEG_BACKBONE = dict(
    type="ResNetV1c", depth=18, num_stages=4, out_indices=(0, 1, 2, 3), norm_cfg=dict(type="BN")
)
FCN = dict(
    type="FCNHead", in_channels=512, in_index=3, channels=32, num_convs=1, concat_input=True, num_classes=4,
    norm_cfg=dict(type="BN"), align_corners=False,
    loss_decode=[dict(type="CrossEntropyLoss", loss_weight=1.0), dict(type="DiceLoss", loss_weight=0.5)],
)  # fmt: skip
UPER = dict(
    type="UPerHead", in_channels=[64, 128, 256, 512], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3), channels=32,
    num_classes=4, norm_cfg=dict(type="BN"), align_corners=False,
    loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
)  # fmt: skip


def scoped_build(scope, cfg):
    reg = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return reg.build(ConfigDict(copy.deepcopy(cfg)))


def block(name, cfg, scope, inputs, **extra):
    cfg = copy.deepcopy(cfg)
    return dict(name=name, type=f"{scope}.{cfg.pop('type')}", inputs=inputs, **cfg, **extra)


def metainfo(i, tasks, scale=1.0):
    h, w = SIZE
    ori = (round(h / scale), round(w / scale))
    return dict(img_shape=SIZE, pad_shape=SIZE, batch_input_shape=SIZE, ori_shape=ori,
                scale_factor=(scale, scale), img_id=i, tasks=tuple(tasks))  # fmt: skip


def det_gt(i):
    if i == 1:  # one image without objects
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    return torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]]) + i, torch.tensor([i % 3, 2])


def det_samples(cls, n=3, scale=1.0):
    out = []
    for i in range(n):
        s = cls()
        s.set_metainfo(metainfo(i, ["detection"], scale))
        boxes, labels = det_gt(i)
        s.gt_instances = InstanceData(bboxes=boxes, labels=labels)
        s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        out.append(s)
    return out


def seg_samples(cls, n=2, scale=1.0):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        s = cls()
        s.set_metainfo(metainfo(i, ["segmentation"], scale))
        gt = torch.randint(0, 4, (1, *SIZE), generator=g)
        gt[:, :4] = 255  # some ignored pixels
        s.gt_sem_seg = PixelData(data=gt)
        out.append(s)
    return out


def inputs(n):
    return torch.randn(n, 3, *SIZE, generator=torch.Generator().manual_seed(0))


def assert_same_losses(ours, theirs, prefix, their_prefix=""):
    mapped = {k[len(prefix) + 1 :]: v for k, v in ours.items() if not k.endswith(".weight")}
    theirs = {k[len(their_prefix) :]: v for k, v in theirs.items()}
    assert set(mapped) == set(theirs), (mapped.keys(), theirs.keys())
    for k, v in theirs.items():
        v = sum(v) if isinstance(v, (list, tuple)) else v
        torch.testing.assert_close(mapped[k], v, atol=1e-5, rtol=0, msg=f"loss {k}")


def mixed_model():
    torch.manual_seed(0)
    return MultiTaskModel(
        blocks=[
            block("backbone", MMSEG_BACKBONE, "mmseg", "img"),
            block("neck", MMDET_NECK | dict(in_channels=[128, 256, 512]), "mmdet", ["backbone.1", "backbone.2",
                  "backbone.3"]),
            block("det_head", FCOS, "mmdet", "neck", task="detection", test_cfg=DET_TEST_CFG),
            block("seg_head", FCN, "mmseg", "backbone", task="segmentation"),
            dict(name="depth_head", type="DepthHead", inputs="neck.0", task="depth", in_channels=32, channels=16),
        ]
    )  # fmt: skip
