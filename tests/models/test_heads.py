"""Native heads: losses (incl. empty ground truth), target assignment, predictions in original coordinates."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.structures import InstanceData, PixelData

from multitask_vision.models.heads import AnchorFreeDetHead, DepthHead, SegHead
from multitask_vision.models.spec import FeatureSpec
from multitask_vision.structures import MultiTaskDataSample

SIZE = 64


def make_sample(img_shape=(SIZE, SIZE), ori_shape=None, scale=(1.0, 1.0), batch_shape=(SIZE, SIZE), **fields):
    sample = MultiTaskDataSample()
    sample.set_metainfo(
        dict(
            img_shape=img_shape,
            ori_shape=ori_shape or img_shape,
            pad_shape=batch_shape,
            batch_input_shape=batch_shape,
            scale_factor=scale,
        )
    )
    for name, value in fields.items():
        setattr(sample, name, value)
    return sample


def det_sample(boxes, labels, **meta):
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels=torch.tensor(labels)
    )
    return make_sample(gt_instances=gt, **meta)


def feats(channels, strides, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, channels, SIZE // s, SIZE // s, generator=g) for s in strides)


def total(losses) -> torch.Tensor:
    return sum(v for k, v in losses.items() if "loss" in k)


def assert_trains(head, x, samples, steps=5):
    """Losses are finite, backprop to every parameter, and a few optimizer steps lower their sum."""
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        loss = total(head.loss(x, samples))
        assert torch.isfinite(loss), loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        opt.step()
    assert total(head.loss(x, samples)).item() < first


# ----------------------------------------------------------------------------------------------- detection
def det_head(**kw):
    cfg = dict(num_classes=3, in_channels=8, feat_channels=16, strides=(8, 16, 32))
    return AnchorFreeDetHead(**{**cfg, **kw})


def test_det_loss_trains_with_an_image_without_boxes():
    torch.manual_seed(0)
    head = det_head()
    samples = [det_sample([[4, 6, 30, 40], [20, 10, 60, 60]], [0, 2]), det_sample([], [])]
    losses = head.loss(feats(8, head.strides), samples)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_centerness"}
    assert losses["loss_bbox"] > 0
    assert_trains(head, feats(8, head.strides), samples)


def test_det_empty_ground_truth_gives_finite_zero_box_losses():
    head = det_head()
    losses = head.loss(feats(8, head.strides), [det_sample([], []), det_sample([], [])])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"] == 0 and losses["loss_centerness"] == 0 and losses["loss_cls"] > 0
    total(losses).backward()
    assert head.conv_cls.weight.grad is not None


def level_maps(head, labels, b):
    """Split assigned labels (B, P) into per-level (B, h, w) maps for a SIZE x SIZE input."""
    sizes = [SIZE // s for s in head.strides]
    return [m.reshape(b, s, s) for m, s in zip(labels.split([s * s for s in sizes], 1), sizes)]


def assign(head, samples):
    points, strides, ranges = head.points([(SIZE // s, SIZE // s) for s in head.strides], torch.device("cpu"))
    labels, ltrb = head.get_targets(points, strides, ranges, *head.pack_gt(samples, torch.device("cpu")))
    return points, labels, ltrb


def test_det_assignment_center_sampling_and_levels():
    head = det_head(strides=(8, 16))  # regress ranges (-1, 64), (64, inf)
    assert head.regress_ranges == ((-1.0, 64.0), (64.0, 1e8))
    samples = [det_sample([[0, 0, 32, 32]], [2]), det_sample([], [])]
    points, labels, ltrb = assign(head, samples)
    bg = head.num_classes
    l0, l1 = level_maps(head, labels, 2)
    # stride-8 points at 4, 12, 20 ...: the centre region 16 +- 1.5 * 8 holds 12 and 20 strictly
    expected = torch.full((8, 8), bg)
    expected[1:3, 1:3] = 2
    assert torch.equal(l0[0], expected)
    assert (l1 == bg).all()  # largest distance < 64: not in the stride-16 range
    assert (labels[1] == bg).all()  # the image without boxes is all background
    first = (labels[0] == 2).nonzero()[0, 0]
    assert points[first].tolist() == [12.0, 12.0] and ltrb[0, first].tolist() == [12.0, 12.0, 20.0, 20.0]


def test_det_assignment_smallest_box_wins_and_ranges():
    head = det_head(strides=(8, 16), center_sampling=False)
    samples = [det_sample([[0, 0, 48, 48], [0, 0, 32, 32], [0, 0, 64, 160]], [0, 1, 2])]
    _, labels, _ = assign(head, samples)
    l0, l1 = level_maps(head, labels, 1)
    assert l0[0, 1, 1] == 1  # (12, 12) lies in both small boxes: the smaller one
    assert l0[0, 4, 4] == 0  # (36, 36) lies only in the 48-box (and in the tall box, out of range)
    assert l0[0, 7, 7] == head.num_classes  # (60, 60): tall box only, its distance 100 > 64
    assert l1[0, 3, 3] == 2  # (56, 56) on stride 16: tall box, largest distance 104 in (64, inf)


def fake_outputs(head, boxes_at, b=1):
    """Head outputs that are background everywhere except ``boxes_at``: [(level, row, col, label, ltrb, logit)]."""
    sizes = [SIZE // s for s in head.strides]
    cls = [torch.full((b, head.num_classes, s, s), -20.0) for s in sizes]
    reg = [torch.ones(b, 4, s, s) for s in sizes]
    ctr = [torch.full((b, 1, s, s), 20.0) for s in sizes]
    for level, row, col, label, ltrb, logit in boxes_at:
        cls[level][:, label, row, col] = logit
        reg[level][:, :, row, col] = torch.tensor(ltrb, dtype=torch.float32)
    return tuple(cls), tuple(reg), tuple(ctr)


def test_det_predict_rescales_to_original_image(monkeypatch):
    head = det_head(strides=(8, 16)).eval()
    # level 0, row 2, col 3 -> point (28, 20); ltrb (8, 4, 12, 16) -> box (20, 16, 40, 36) in input pixels
    outputs = fake_outputs(
        head,
        [
            (0, 2, 3, 1, (8, 4, 12, 16), 10.0),
            (0, 2, 4, 1, (16, 4, 4, 16), 5.0),  # the same box from (36, 20), lower score, same class: NMS
            (0, 2, 4, 2, (16, 4, 4, 16), 5.0),  # the same box, another class: kept
            (1, 3, 3, 0, (100, 100, 100, 100), 8.0),  # beyond the image: clipped
        ],
    )
    monkeypatch.setattr(head, "forward", lambda x: outputs)
    # the image was resized by 0.5 in width and 2 in height: the original is 128 wide, 32 high
    sample = make_sample(scale=(0.5, 2.0), ori_shape=(32, 128))
    head.predict(None, [sample])
    pred = sample.pred_instances
    assert pred.labels.tolist() == [1, 0, 2]
    torch.testing.assert_close(pred.bboxes[0], torch.tensor([40.0, 8.0, 80.0, 18.0]))
    torch.testing.assert_close(pred.bboxes[1], torch.tensor([0.0, 0.0, 128.0, 32.0]))
    assert pred.scores[0] == pytest.approx(1.0, abs=1e-3) and pred.scores[2] < pred.scores[0]


def test_det_predict_nothing_passes_gives_empty_instances(monkeypatch):
    head = det_head(strides=(8, 16)).eval()
    monkeypatch.setattr(head, "forward", lambda x: fake_outputs(head, [], b=2))
    samples = [make_sample(), make_sample()]
    head.predict(None, samples)
    for s in samples:
        p = s.pred_instances
        assert p.bboxes.shape == (0, 4) and p.scores.shape == (0,) and p.labels.shape == (0,)
        assert p.labels.dtype == torch.long


def test_det_predict_runs_on_real_outputs_with_max_per_img():
    head = det_head(max_per_img=7, score_thr=0.0).eval()
    samples = [make_sample(), make_sample()]
    with torch.no_grad():
        head.predict(feats(8, head.strides), samples)
    assert all(len(s.pred_instances) == 7 for s in samples)


def test_det_bad_strides_and_ranges_are_named():
    with pytest.raises(ValueError, match=r"regress_ranges has 2 entries but strides \(8, 16, 32\) has 3"):
        det_head(regress_ranges=((-1, 64), (64, 1e8)))
    head = det_head()
    specs = (FeatureSpec(8, 8), FeatureSpec(8, 16), FeatureSpec(8, 64))
    with pytest.raises(ValueError, match=r"level 2 has stride 64 but strides\[2\] = 32"):
        head.output_spec(specs)
    with pytest.raises(ValueError, match="give 3 levels but it receives 2"):
        head.output_spec(specs[:2])


def test_det_group_norm_divides_feat_channels():
    head = det_head(feat_channels=48)
    assert [m.num_groups for m in head.modules() if isinstance(m, torch.nn.GroupNorm)][0] == 24


# ------------------------------------------------------------------------------------------ segmentation
def seg_sample(gt, **meta):
    return make_sample(gt_sem_seg=PixelData(data=gt.long()), **meta)


def test_seg_loss_trains_and_reports_accuracy():
    torch.manual_seed(0)
    head = SegHead(num_classes=4, in_channels=[8, 8], channels=8)
    gt = torch.randint(0, 4, (2, 1, SIZE, SIZE))
    gt[:, :, 40:] = 255  # padding
    samples = [seg_sample(g) for g in gt]
    x = feats(8, (8, 16))
    losses = head.loss(x, samples)
    assert set(losses) == {"loss_seg", "acc_seg"} and 0 <= losses["acc_seg"] <= 100
    assert not losses["acc_seg"].requires_grad
    assert_trains(head, x, samples)


def weighted_ce(class_weight, **kw):
    return dict(
        type="SegCrossEntropyLoss", class_weight=class_weight, avg_non_ignore=True, loss_name="loss_seg", **kw
    )


def test_seg_all_ignored_is_zero_not_nan():
    head = SegHead(num_classes=4, in_channels=8, channels=8, loss_decode=weighted_ce([1.0, 2.0, 1.0, 1.0]))
    samples = [seg_sample(torch.full((1, SIZE, SIZE), 255)) for _ in range(2)]
    losses = head.loss(feats(8, (8,))[0], samples)
    assert losses["loss_seg"] == 0 and losses["acc_seg"] == 0
    losses["loss_seg"].backward()
    assert torch.isfinite(head.conv_out.weight.grad).all()


def test_seg_class_weight_and_loss_weight_are_used():
    x, gt = feats(8, (8,))[0], torch.randint(0, 3, (2, 1, SIZE, SIZE))
    samples = [seg_sample(g) for g in gt]
    torch.manual_seed(0)
    plain = SegHead(num_classes=3, in_channels=8, channels=8).loss(x, samples)["loss_seg"]
    torch.manual_seed(0)
    weighted = SegHead(num_classes=3, in_channels=8, channels=8, loss_decode=weighted_ce([1, 5, 1])).loss(
        x, samples
    )
    torch.manual_seed(0)
    doubled_ce = dict(
        type="mmseg.CrossEntropyLoss", loss_weight=2.0, avg_non_ignore=True, loss_name="loss_seg"
    )
    doubled = SegHead(num_classes=3, in_channels=8, channels=8, loss_decode=doubled_ce).loss(x, samples)
    assert not torch.isclose(plain, weighted["loss_seg"])
    torch.testing.assert_close(doubled["loss_seg"], 2 * plain)
    with pytest.raises(ValueError, match="class_weight has 2 entries for 3 classes"):
        SegHead(num_classes=3, in_channels=8, loss_decode=weighted_ce([1, 2]))


def test_seg_predict_crops_padding_and_resizes_to_original(monkeypatch):
    head = SegHead(num_classes=2, in_channels=8, channels=8).eval()
    logits = torch.zeros(1, 2, SIZE, SIZE)
    logits[:, 0, :48] = 5.0  # the image (48 x 64) is class 0
    logits[:, 1, 48:] = 5.0  # the padding below it is class 1
    monkeypatch.setattr(head, "forward", lambda x: logits)
    sample = make_sample(img_shape=(48, SIZE), ori_shape=(24, 32), scale=(0.5, 0.5))
    head.predict(None, [sample])
    assert sample.seg_logits.data.shape == (2, 24, 32)
    assert sample.pred_sem_seg.data.shape == (1, 24, 32) and sample.pred_sem_seg.data.dtype == torch.long
    assert (sample.pred_sem_seg.data == 0).all()


# ------------------------------------------------------------------------------------------------- depth
def depth_sample(gt, **meta):
    return make_sample(gt_depth_map=PixelData(data=gt.float()), **meta)


def depth_gt(seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 1, SIZE, SIZE, generator=g) * 8 + 0.5
    gt[:, :, :, 50:] = 0  # padding / holes
    gt[:, :, :5] = 25.0  # beyond max_depth
    return gt


def test_depth_loss_trains():
    torch.manual_seed(0)
    head = DepthHead(in_channels=8, channels=8)
    samples = [depth_sample(g) for g in depth_gt()]
    x = feats(8, (4,))[0]
    assert set(head.loss(x, samples)) == {"loss_depth_l1", "loss_depth_silog"}
    assert_trains(head, x, samples)


def test_depth_invalid_pixels_do_not_count():
    head = DepthHead(in_channels=8, channels=8)
    x, gt = feats(8, (4,))[0], depth_gt()
    base = head.loss(x, [depth_sample(g) for g in gt])
    changed = gt.clone()
    holes = changed[:, :, :, 50:]  # a view: 0 -> negative, NaN, far beyond max_depth
    holes[..., 0::3], holes[..., 1::3], holes[..., 2::3] = -3.0, float("nan"), 1e4
    changed[:, :, :5] = 11.0  # still beyond max_depth
    other = head.loss(x, [depth_sample(g) for g in changed])
    assert base.keys() == other.keys()
    for key in base:
        assert torch.equal(base[key], other[key]), key


def test_depth_no_valid_pixel_is_zero_and_connected():
    head = DepthHead(in_channels=8, channels=8)
    losses = head.loss(feats(8, (4,))[0], [depth_sample(torch.zeros(1, SIZE, SIZE)) for _ in range(2)])
    assert all(v == 0 for v in losses.values())
    total(losses).backward()
    assert torch.isfinite(head.conv_out.weight.grad).all()


def test_depth_loss_values_and_weights(monkeypatch):
    gt = torch.full((1, 1, SIZE, SIZE), 2.0)
    gt[..., : SIZE // 2] = 4.0
    head = DepthHead(
        in_channels=8,
        loss_l1=dict(type="mmdet.L1Loss", loss_weight=0.5),
        loss_silog=dict(type="SILogLoss", variance_focus=0.85),
    )
    monkeypatch.setattr(head, "forward", lambda x: 2 * gt)  # twice the truth everywhere
    losses = head.loss(None, [depth_sample(gt[0])])
    assert losses["loss_depth_l1"].item() == pytest.approx(0.5 * 3.0)  # 0.5 * mean(gt)
    assert losses["loss_depth_silog"].item() == pytest.approx(math.sqrt(0.15) * math.log(2), rel=1e-5)
    only_silog = DepthHead(in_channels=8, loss_l1=None)
    monkeypatch.setattr(only_silog, "forward", lambda x: 2 * gt)
    assert set(only_silog.loss(None, [depth_sample(gt[0])])) == {"loss_depth_silog"}
    with pytest.raises(ValueError, match="not both None"):
        DepthHead(in_channels=8, loss_l1=None, loss_silog=None)


def test_depth_predict_is_bounded_and_at_original_size():
    head = DepthHead(in_channels=8, channels=8, max_depth=5.0).eval()
    torch.nn.init.normal_(head.conv_out.weight, std=100.0)  # saturate the sigmoid both ways
    samples = [make_sample(img_shape=(48, SIZE), ori_shape=(96, 128), scale=(0.5, 0.5)) for _ in range(2)]
    with torch.no_grad():
        head.predict(feats(8, (4,))[0], samples)
    for s in samples:
        depth = s.pred_depth_map.data
        assert depth.shape == (1, 96, 128)
        assert (depth > 0).all() and (depth <= 5.0).all()
