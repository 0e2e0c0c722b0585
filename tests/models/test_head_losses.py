"""The native heads' configured losses (mmdet's / mmseg's / ours, built from dicts) compute exactly what the heads
computed before they were configurable: the reference functions below are the heads' former hard-wired
``loss`` bodies, copied verbatim apart from their parameters. Values (and gradients) must agree to ~1e-6 on
random predictions, with empty ground truth, ignored pixels and invalid depth.

The remaining differences are the OpenMMLab reductions' ``avg_factor + eps`` (eps = 1.2e-7) instead of a clamp
and GIoU's eps: relative errors of ~1e-7. On CPU mmdet's ``FocalLoss`` is always its PyTorch implementation
(mmcv's ``sigmoid_focal_loss`` op has no CPU kernel); the head passes one-hot targets, which keeps it on that
implementation on CUDA too (mmdet picks mmcv's CUDA op only for label-index targets).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData, PixelData
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from multitask_vision.models.heads import AnchorFreeDetHead, DepthHead, SegHead
from multitask_vision.models.heads.det_head import centerness_target, distance_to_boxes
from multitask_vision.models.heads.utils import reduce_mean, resize, stack_pixel_gt
from multitask_vision.models.losses import SILogLoss, build_loss
from multitask_vision.structures import MultiTaskDataSample

SIZE = 64


# ---------------------------------------------------------------------------------- the former loss bodies
def old_det_loss(head, x, data_samples, focal_alpha=0.25, focal_gamma=2.0, w_cls=1.0, w_bbox=1.0, w_ctr=1.0):
    cls_scores, bbox_preds, centernesses = head(x)
    b, k = cls_scores[0].shape[:2]
    device = cls_scores[0].device
    points, strides, ranges = head.points([c.shape[-2:] for c in cls_scores], device)
    labels, ltrb_t = head.get_targets(points, strides, ranges, *head.pack_gt(data_samples, device))

    def flat(maps, c):
        return torch.cat([m.permute(0, 2, 3, 1).reshape(b, -1, c) for m in maps], 1).float()

    cls, ltrb, ctr = flat(cls_scores, k), flat(bbox_preds, 4), flat(centernesses, 1)[..., 0]
    pos = labels < head.num_classes
    num_pos = reduce_mean(pos.sum().float()).clamp(min=1.0)
    onehot = F.one_hot(labels, head.num_classes + 1)[..., : head.num_classes].to(cls.dtype)
    loss_cls = sigmoid_focal_loss(cls, onehot, focal_alpha, focal_gamma, reduction="sum") / num_pos
    pos_points = points[None].expand(b, -1, -1)[pos]
    pos_ltrb_t = ltrb_t[pos]
    ctr_t = centerness_target(pos_ltrb_t)
    ctr_denom = reduce_mean(ctr_t.sum()).clamp(min=1e-6)
    giou = generalized_box_iou_loss(
        distance_to_boxes(pos_points, ltrb[pos]), distance_to_boxes(pos_points, pos_ltrb_t), reduction="none"
    )
    loss_bbox = (giou * ctr_t).sum() / ctr_denom
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], ctr_t, reduction="sum") / num_pos
    return dict(loss_cls=w_cls * loss_cls, loss_bbox=w_bbox * loss_bbox, loss_centerness=w_ctr * loss_ctr)


def old_seg_loss(head, x, data_samples, class_weight=None, loss_weight=1.0):
    class_weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
    gt = stack_pixel_gt(data_samples, "gt_sem_seg")[:, 0].long()
    logits = resize(head(x).float(), gt.shape[-2:])
    valid = gt != head.ignore_index
    ce = F.cross_entropy(logits, gt, weight=class_weight, ignore_index=head.ignore_index, reduction="none")
    if class_weight is None:
        denom = valid.sum().to(ce.dtype)
    else:
        denom = (class_weight[gt.masked_fill(~valid, 0)] * valid).sum()
    loss = ce.sum() / denom.clamp(min=1e-12)
    with torch.no_grad():
        correct = ((logits.argmax(1) == gt) & valid).sum()
        acc = correct.float() * 100.0 / valid.sum().clamp(min=1)
    return dict(loss_seg=loss_weight * loss, acc_seg=acc)


def old_depth_loss(head, x, data_samples, loss_l1_weight=1.0, loss_silog_weight=1.0, silog_lambda=0.85):
    gt = stack_pixel_gt(data_samples, "gt_depth_map").float()
    pred = resize(head(x).float(), gt.shape[-2:])
    valid = (gt >= head.min_depth) & (gt <= head.max_depth)
    gt = torch.where(valid, gt, torch.ones_like(gt))
    mask = valid.to(pred.dtype)
    losses = {}
    if loss_l1_weight > 0:
        l1 = ((pred - gt).abs() * mask).sum() / mask.sum().clamp(min=1)
        losses["loss_depth_l1"] = loss_l1_weight * l1
    if loss_silog_weight > 0:
        d = (pred.log() - gt.log()) * mask
        n = mask.sum((1, 2, 3))
        mean_d = d.sum((1, 2, 3)) / n.clamp(min=1)
        mean_d2 = d.pow(2).sum((1, 2, 3)) / n.clamp(min=1)
        silog = (mean_d2 - silog_lambda * mean_d.pow(2)).clamp(min=1e-8).sqrt()
        has_valid = (n > 0).to(silog.dtype)
        silog = (silog * has_valid).sum() / has_valid.sum().clamp(min=1)
        losses["loss_depth_silog"] = loss_silog_weight * silog
    return losses


# ---------------------------------------------------------------------------------------------- helpers
def sample(**fields):
    s = MultiTaskDataSample()
    s.set_metainfo(dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                        batch_input_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0)))  # fmt: skip
    for name, value in fields.items():
        setattr(s, name, value)
    return s


def feats(channels, strides, seed, batch):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, channels, SIZE // s, SIZE // s, generator=g) for s in strides)


def randomise(head, seed, std=0.1):
    """Spread the outputs (the default inits make nearly every box prediction 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def assert_same(new_fn, old_fn, params):
    """Equal values, and equal gradients of their sum on every parameter."""
    new, old = new_fn(), None
    assert set(new) == set(old := old_fn()), (new.keys(), old.keys())
    for key in old:
        torch.testing.assert_close(new[key], old[key], rtol=1e-6, atol=1e-6, msg=key)
    grads = []
    for losses in (new, old_fn()):
        total = sum(v for k, v in losses.items() if "loss" in k)
        grads.append(torch.autograd.grad(total, params, allow_unused=True))
    for a, b in zip(*grads):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return new


# ---------------------------------------------------------------------------------------------- detection
def det_samples(boxes_per_image):
    return [
        sample(gt_instances=InstanceData(bboxes=torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
                                         labels=torch.tensor([i % 3 for i in range(len(b))], dtype=torch.long)))
        for b in boxes_per_image
    ]  # fmt: skip


DET_GT = [
    [[4, 6, 30, 40], [20, 10, 60, 60], [0, 0, 12, 10]],
    [],  # an image without objects
    [[10, 30, 50, 63], [33, 2, 61, 28]],
]


@pytest.mark.parametrize(
    "kwargs, old_kwargs",
    [
        ({}, {}),
        (
            dict(
                loss_cls=dict(
                    type="mmdet.FocalLoss", use_sigmoid=True, gamma=1.5, alpha=0.4, loss_weight=2.0
                ),
                loss_bbox=dict(type="mmdet.GIoULoss", loss_weight=0.5),
                loss_centerness=dict(type="mmdet.CrossEntropyLoss", use_sigmoid=True, loss_weight=3.0),
            ),
            dict(focal_alpha=0.4, focal_gamma=1.5, w_cls=2.0, w_bbox=0.5, w_ctr=3.0),
        ),
    ],
    ids=["defaults", "custom"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_det_losses_equal_the_former_ones(kwargs, old_kwargs, seed):
    torch.manual_seed(seed)
    head = AnchorFreeDetHead(num_classes=3, in_channels=8, feat_channels=16, strides=(8, 16, 32), **kwargs)
    randomise(head, seed)
    x, samples = feats(8, head.strides, seed, 3), det_samples(DET_GT)
    params = list(head.parameters())
    losses = assert_same(
        lambda: head.loss(x, samples), lambda: old_det_loss(head, x, samples, **old_kwargs), params
    )
    assert all(v > 0 for v in losses.values())  # boxes and centerness were really compared


def test_det_losses_equal_the_former_ones_without_any_object():
    head = AnchorFreeDetHead(num_classes=3, in_channels=8, feat_channels=16, strides=(8, 16, 32))
    x, samples = feats(8, head.strides, 0, 2), det_samples([[], []])
    losses = assert_same(
        lambda: head.loss(x, samples), lambda: old_det_loss(head, x, samples), list(head.parameters())
    )
    assert losses["loss_bbox"] == 0 and losses["loss_centerness"] == 0 and losses["loss_cls"] > 0


def test_det_head_builds_the_configured_mmdet_losses():
    from mmdet.models.losses import CrossEntropyLoss, FocalLoss, GIoULoss, L1Loss

    head = AnchorFreeDetHead(
        num_classes=3, in_channels=8, loss_bbox=dict(type="mmdet.L1Loss", loss_weight=2.0)
    )
    assert (type(head.loss_cls), type(head.loss_bbox), type(head.loss_centerness)) == (
        FocalLoss, L1Loss, CrossEntropyLoss,
    )  # fmt: skip
    assert (head.loss_cls.gamma, head.loss_cls.alpha, head.loss_bbox.loss_weight) == (2.0, 0.25, 2.0)
    assert type(AnchorFreeDetHead(num_classes=3, in_channels=8).loss_bbox) is GIoULoss
    assert not any(k.startswith("loss_") for k in head.state_dict())  # checkpoints keep their keys


# ------------------------------------------------------------------------------------------- segmentation
def seg_samples(seed, ignore="some"):
    g = torch.Generator().manual_seed(seed)
    gt = torch.randint(0, 4, (2, 1, SIZE, SIZE), generator=g)
    if ignore == "some":
        gt[:, :, 40:] = 255  # padding
        gt[0, 0, :5, :5] = 255  # void
    elif ignore == "all":
        gt[:] = 255
    return [sample(gt_sem_seg=PixelData(data=g_)) for g_ in gt]


@pytest.mark.parametrize("ignore", ["some", "none", "all"])
@pytest.mark.parametrize(
    "loss_decode, old_kwargs",
    [
        (None, {}),
        (dict(type="mmseg.CrossEntropyLoss", loss_weight=0.7, avg_non_ignore=True, loss_name="loss_seg"),
         dict(loss_weight=0.7)),
        (dict(type="SegCrossEntropyLoss", class_weight=[1.0, 3.0, 0.5, 2.0], avg_non_ignore=True,
              loss_name="loss_seg"), dict(class_weight=[1.0, 3.0, 0.5, 2.0])),
    ],
    ids=["defaults", "loss_weight", "class_weight"],
)  # fmt: skip
def test_seg_losses_equal_the_former_ones(loss_decode, old_kwargs, ignore):
    torch.manual_seed(0)
    kwargs = {} if loss_decode is None else dict(loss_decode=loss_decode)
    head = SegHead(num_classes=4, in_channels=[8, 8], channels=8, **kwargs)
    randomise(head, 0)
    x, samples = feats(8, (8, 16), 0, 2), seg_samples(0, ignore)
    params = list(head.parameters())
    losses = assert_same(
        lambda: head.loss(x, samples), lambda: old_seg_loss(head, x, samples, **old_kwargs), params
    )
    assert (losses["loss_seg"] > 0) == (ignore != "all")


def test_seg_loss_decode_list_and_its_errors():
    dice = dict(type="mmseg.DiceLoss", loss_weight=0.5)
    head = SegHead(
        num_classes=4,
        in_channels=8,
        channels=8,
        loss_decode=[dict(type="mmseg.CrossEntropyLoss", avg_non_ignore=True), dice],
    )
    losses = head.loss(feats(8, (8,), 0, 2)[0], seg_samples(0))
    assert set(losses) == {"loss_ce", "loss_dice", "acc_seg"}  # named by the losses, as in mmseg's heads
    with pytest.raises(ValueError, match=r"loss_decode\[0\]: mmseg.CrossEntropyLoss with class_weight fails on "
                                         r"ignored pixels .* use type='SegCrossEntropyLoss'"):  # fmt: skip
        SegHead(
            num_classes=2, in_channels=8, loss_decode=dict(type="mmseg.CrossEntropyLoss", class_weight=[1, 2])
        )
    with pytest.raises(ValueError, match=r"loss_decode\[1\]: L1Loss has no loss_name"):
        SegHead(num_classes=2, in_channels=8, loss_decode=[dice, dict(type="mmdet.L1Loss")])
    with pytest.raises(ValueError, match="class_weight needs avg_non_ignore=True"):
        SegHead(
            num_classes=2, in_channels=8, loss_decode=dict(type="SegCrossEntropyLoss", class_weight=[1, 2])
        )


# -------------------------------------------------------------------------------------------------- depth
def depth_samples(seed, valid="some"):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(3, 1, SIZE, SIZE, generator=g) * 8 + 0.5
    if valid == "some":
        gt[:, :, :, 50:] = 0  # padding / holes
        gt[:, :, :5] = 25.0  # beyond max_depth
        gt[0, 0, 10, 10] = float("nan")
        gt[2] = 0  # an image without a valid pixel
    elif valid == "none":
        gt[:] = 0
    return [sample(gt_depth_map=PixelData(data=g_)) for g_ in gt]


@pytest.mark.parametrize("valid", ["some", "all", "none"])
@pytest.mark.parametrize(
    "kwargs, old_kwargs",
    [
        ({}, {}),
        (dict(loss_l1=dict(type="mmdet.L1Loss", loss_weight=0.3),
              loss_silog=dict(type="SILogLoss", variance_focus=0.5, loss_weight=2.0)),
         dict(loss_l1_weight=0.3, loss_silog_weight=2.0, silog_lambda=0.5)),
        (dict(loss_l1=None), dict(loss_l1_weight=0.0)),
        (dict(loss_silog=None), dict(loss_silog_weight=0.0)),
    ],
    ids=["defaults", "weights", "silog_only", "l1_only"],
)  # fmt: skip
def test_depth_losses_equal_the_former_ones(kwargs, old_kwargs, valid):
    torch.manual_seed(0)
    head = DepthHead(in_channels=8, channels=8, **kwargs)
    randomise(head, 0)
    x, samples = feats(8, (4,), 0, 3)[0], depth_samples(0, valid)
    params = list(head.parameters())
    losses = assert_same(
        lambda: head.loss(x, samples), lambda: old_depth_loss(head, x, samples, **old_kwargs), params
    )
    assert all((v > 0) == (valid != "none") for v in losses.values())


def test_silog_loss_is_not_mmsegs_and_checks_its_arguments():
    pred, gt = torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 4, 4), 1.0)
    gt[..., :1] = 4.0  # d = log(pred / gt): -log 2 on 4 pixels, log 2 on 12
    ours = SILogLoss(variance_focus=0.85)(pred, gt, torch.ones_like(gt))
    mmseg = build_loss(dict(type="mmseg.SiLogLoss"), "test")(pred, gt)
    d = torch.tensor([-1.0] * 4 + [1.0] * 12) * torch.log(torch.tensor(2.0))
    torch.testing.assert_close(ours, (d.pow(2).mean() - 0.85 * d.mean() ** 2).sqrt())
    torch.testing.assert_close(mmseg, (d.pow(2).mean() - 0.5 * d.mean() ** 2).sqrt())  # λ fixed at 0.5 there
    with pytest.raises(ValueError, match=r"variance_focus must be in \[0, 1\]"):
        SILogLoss(variance_focus=1.5)


def test_loss_configs_errors_name_the_key():
    with pytest.raises(
        ValueError, match=r"DepthHead: loss_l1: unknown loss type 'L1Los'; close matches: .*mmdet\.L1Loss"
    ):
        DepthHead(in_channels=8, loss_l1=dict(type="L1Los"))
    with pytest.raises(
        ValueError, match=r"AnchorFreeDetHead: loss_cls must be a loss config dict with a 'type'"
    ):
        AnchorFreeDetHead(num_classes=3, in_channels=8, loss_cls=0.25)
    with pytest.raises(
        ValueError, match=r"AnchorFreeDetHead: loss_cls \(FocalLoss\) could not be built: .*alhpa"
    ):
        AnchorFreeDetHead(num_classes=3, in_channels=8, loss_cls=dict(type="mmdet.FocalLoss", alhpa=0.5))
    with pytest.raises(ValueError, match=r"loss type 'CrossEntropyLoss' is ambiguous: write one of "
                                         r"'mmdet.CrossEntropyLoss', 'mmseg.CrossEntropyLoss'"):  # fmt: skip
        SegHead(num_classes=2, in_channels=8, loss_decode=dict(type="CrossEntropyLoss"))
