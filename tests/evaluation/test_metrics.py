"""Task-routed metrics on hand-computed toy cases, and Δm."""

from __future__ import annotations

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import multitask_vision
from multitask_vision.evaluation import MultiTaskEvaluator, TaskMetric, delta_m
from multitask_vision.structures import MultiTaskDataSample

multitask_vision.register_all_modules()
init_default_scope("multitask_vision")

CLASSES = ("a", "b")


def sample(i, tasks, boxes=None, labels=None, seg=None, depth=None, pred_scale=1.0):
    s = MultiTaskDataSample()
    s.set_metainfo(
        dict(img_id=f"img_{i}", img_path=f"img_{i}.png", ori_shape=(8, 8), img_shape=(8, 8), tasks=tasks)
    )
    boxes = torch.tensor(boxes or [[1.0, 1.0, 5.0, 6.0]])
    labels = torch.tensor(labels or [1])
    s.gt_instances = InstanceData(bboxes=boxes, labels=labels)
    s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    s.pred_instances = InstanceData(
        bboxes=boxes.clone(), labels=labels.clone(), scores=torch.full((len(labels),), 0.9)
    )
    if seg is not None:
        s.gt_sem_seg = PixelData(data=seg[0][None])
        s.pred_sem_seg = PixelData(data=seg[1][None])
    if depth is not None:
        s.gt_depth_map = PixelData(data=depth[None])
        s.pred_depth_map = PixelData(data=depth[None] * pred_scale)
    return s


def run(metric_cfg, samples, meta=None):
    ev = MultiTaskEvaluator(metric_cfg if isinstance(metric_cfg, list) else [metric_cfg])
    ev.dataset_meta = meta or dict(task_meta=dict(detection=dict(classes=CLASSES),
                                                  segmentation=dict(classes=("bg", "fg")), depth={}))  # fmt: skip
    ev.process(samples)
    return ev.evaluate(len(samples))


def test_voc_map_perfect_and_routing():
    det = [sample(i, ("detection",)) for i in range(3)]
    # a sample not labelled for detection with a wrong prediction must not count
    other = sample(9, ("depth",), boxes=[[0.0, 0.0, 2.0, 2.0]], labels=[0])
    other.pred_instances = InstanceData(bboxes=torch.tensor([[4.0, 4.0, 7.0, 7.0]]), labels=torch.tensor([1]),
                                        scores=torch.tensor([0.99]))  # fmt: skip
    res = run(dict(type="TaskMetric", task="detection", metric=dict(type="mmdet.VOCMetric")), det + [other])
    assert res["detection/pascal_voc/mAP"] == pytest.approx(1.0)


def test_coco_metric_from_samples_perfect():
    det = [
        sample(i, ("detection",), boxes=[[1.0, 1.0, 5.0, 6.0], [2.0, 3.0, 7.0, 7.0]], labels=[0, 1])
        for i in range(3)
    ]
    res = run(
        dict(type="TaskMetric", task="detection", metric=dict(type="mmdet.CocoMetric", metric="bbox")), det
    )
    assert res["detection/coco/bbox_mAP"] == pytest.approx(1.0)


def test_iou_known_value():
    gt = torch.tensor([[0, 0, 1, 1]] * 4)
    pred = torch.tensor([[0, 1, 1, 1]] * 4)  # bg: inter 4 / union 8 -> 50; fg: 8 / 12 -> 66.67
    s = sample(0, ("segmentation",), seg=(gt, pred))
    res = run(dict(type="TaskMetric", task="segmentation", metric=dict(type="mmseg.IoUMetric")), [s])
    assert res["segmentation/mIoU"] == pytest.approx((50.0 + 200 / 3) / 2, abs=0.01)


def test_depth_absrel_known_value():
    depth = torch.full((8, 8), 2.0)
    s = sample(0, ("depth",), depth=depth, pred_scale=1.1)  # 10% over-estimate everywhere
    res = run(dict(type="TaskMetric", task="depth", metric=dict(type="mmseg.DepthMetric")), [s])
    assert res["depth/abs_rel"] == pytest.approx(0.1, abs=1e-4)
    assert res["depth/d1"] == pytest.approx(1.0)


def test_task_without_validation_samples_is_reported():
    m = TaskMetric(task="depth", metric=dict(type="mmseg.DepthMetric"))
    with pytest.raises(
        ValueError, match=r"TaskMetric\(task='depth'\): no validation source labels this task"
    ):
        m.dataset_meta = dict(task_meta=dict(detection=dict(classes=CLASSES)))


def test_delta_m():
    results = {"det/mAP": 0.55, "depth/abs_rel": 0.09, "seg/mIoU": 60.0}
    base = {"det/mAP": 0.50, "depth/abs_rel": 0.10, "seg/mIoU": 60.0}
    # +10% mAP, +10% (lower abs_rel is better), 0% -> mean +6.67%
    assert delta_m(results, base) == pytest.approx(20 / 3)
    assert delta_m(results, base, lower_is_better=["det/mAP"]) == pytest.approx(0.0)
    with pytest.raises(KeyError, match="'x/y' is not among the metrics"):
        delta_m(results, {"x/y": 1.0})


def test_evaluator_adds_delta_m():
    det = [sample(i, ("detection",)) for i in range(2)]
    ev = MultiTaskEvaluator(
        [dict(type="TaskMetric", task="detection", metric=dict(type="mmdet.VOCMetric"))],
        baselines={"detection/pascal_voc/mAP": 0.8},
    )
    ev.dataset_meta = dict(task_meta=dict(detection=dict(classes=CLASSES)))
    ev.process(det)
    res = ev.evaluate(2)
    assert res["multitask/delta_m"] == pytest.approx(25.0)


def test_primary_metrics_are_the_baselines_else_each_task_metrics_primary():
    from mmengine.evaluator import Evaluator

    from multitask_vision.evaluation.evaluator import primary_metrics

    metrics = [
        dict(
            type="TaskMetric", task="detection", metric=dict(type="mmdet.VOCMetric"), primary="pascal_voc/mAP"
        ),
        dict(type="TaskMetric", task="depth", metric=dict(type="mmseg.DepthMetric"), primary="rmse"),
        dict(type="TaskMetric", task="seg", metric=dict(type="mmseg.IoUMetric")),  # no primary: not shown
    ]
    with_baselines = MultiTaskEvaluator(
        metrics, baselines={"detection/pascal_voc/mAP": 0.8, "depth/abs_rel": 0.1, "seg/mAcc": 50.0},
        lower_is_better=["seg/mAcc"],
    )  # fmt: skip
    assert primary_metrics(with_baselines) == [
        ("detection/pascal_voc/mAP", False),
        ("depth/abs_rel", True),
        ("seg/mAcc", True),  # named lower-is-better by the evaluator, as Δm counts it
    ]
    assert primary_metrics(MultiTaskEvaluator(metrics)) == [
        ("detection/pascal_voc/mAP", False),
        ("depth/rmse", True),
    ]
    assert (
        primary_metrics(Evaluator([dict(type="TaskMetric", task="seg", metric=dict(type="mmseg.IoUMetric"))]))
        == []
    )
    with pytest.raises(ValueError, match="primary must be a metric name"):
        TaskMetric(task="seg", metric=dict(type="mmseg.IoUMetric"), primary="")
