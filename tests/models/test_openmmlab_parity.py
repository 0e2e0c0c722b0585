"""Parity: mmdet/mmseg blocks inside our graph behave exactly as inside mmdet's and mmseg's own models.

Same weights (copied across), same inputs and samples: the loss dicts must agree value by value and the
predictions must be identical. This is what proves the adapters call the heads' own loss()/predict(), so
every configured loss, assigner, sampler, train_cfg and test_cfg is honoured.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

import multitask_vision
from multitask_vision.models import GraphError, MultiTaskModel
from multitask_vision.structures import MultiTaskDataSample

multitask_vision.register_all_modules()
from multitask_vision.models.block_types import register_openmmlab_modules  # noqa: E402

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


# ----------------------------------------------------------------------------------------------- routing
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


def test_dry_run_measures_foreign_outputs():
    model = MultiTaskModel(blocks=[
        block("backbone", MMDET_BACKBONE, "mmdet", "img"),
        block("neck", MMDET_NECK, "mmdet", "backbone"),
        block("det_head", FCOS, "mmdet", "neck", task="detection"),
    ])  # fmt: skip
    assert [(s.channels, s.stride) for s in model.specs["backbone"]] == [(128, 8), (256, 16), (512, 32)]
    assert [(s.channels, s.stride) for s in model.specs["neck"]] == [(32, 8), (32, 16), (32, 32), (32, 64)]
    assert model.blocks["backbone"].training  # the dry run left the train/eval state as it was
