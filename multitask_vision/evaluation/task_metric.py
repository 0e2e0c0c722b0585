"""Task-routed evaluation: an mmdet/mmseg metric that sees only the samples labelled for its task.

``TaskMetric(task='segmentation', metric=dict(type='mmseg.IoUMetric', iou_metrics=['mIoU']))`` filters the
batch to samples whose ``tasks`` include ``segmentation``, hands them to the wrapped metric unchanged (our
data samples carry the same fields as mmdet's and mmseg's), takes that task's class names from the dataset's
``task_meta``, and prefixes its results with the task (``segmentation/mIoU``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from multitask_vision.models.block_types import register_openmmlab_modules, scope_context
from multitask_vision.registry import METRICS


def _build_inner(cfg: dict) -> BaseMetric:
    type_name = cfg.get("type", "")
    if not isinstance(type_name, str) or "." not in type_name:
        raise ValueError(f"TaskMetric.metric.type must be scoped, e.g. 'mmdet.VOCMetric', got {type_name!r}")
    register_openmmlab_modules()
    with scope_context(type_name.split(".", 1)[0]):
        return METRICS.build(cfg)


@METRICS.register_module()
class TaskMetric(BaseMetric):
    """Route samples labelled for ``task`` to ``metric`` and prefix its results with ``task``.

    Args:
        task: task name, as in the heads' ``task=``.
        metric: config of the wrapped metric (``mmdet.VOCMetric``, ``mmdet.CocoMetric``, ``mmseg.IoUMetric``,
            ``mmseg.DepthMetric``, or any other ``BaseMetric``).
        primary: the task's headline result, a key of the wrapped metric's results (``'pascal_voc/mAP'``,
            ``'mIoU'``, ``'abs_rel'``): shown where one number per task is (the deploy report) when the evaluator
            has no Δm baselines (see :func:`multitask_vision.evaluation.evaluator.primary_metrics`).
    """

    def __init__(
        self,
        task: str,
        metric: dict,
        collect_device: str = "cpu",
        prefix: str | None = None,
        primary: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix or task)
        if primary is not None and (not isinstance(primary, str) or not primary):
            raise ValueError(f"TaskMetric(task={task!r}): primary must be a metric name, got {primary!r}")
        self.task = task
        self.primary = primary
        self.metric = _build_inner(dict(metric))
        self._coco_ids: dict[Any, int] = {}

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict | None) -> None:
        self._dataset_meta = meta
        if meta is None:
            return
        task_meta = meta.get("task_meta")
        if task_meta is not None:
            if self.task not in task_meta:
                raise ValueError(
                    f"TaskMetric(task={self.task!r}): no validation source labels this task "
                    f"(labelled: {sorted(task_meta)})"
                )
            self.metric.dataset_meta = dict(task_meta[self.task])
        else:  # a single plain dataset
            self.metric.dataset_meta = meta

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        mine = [s for s in data_samples if self.task in s.get("tasks", ())]
        if mine and self._coco_from_samples:
            mine = [self._with_coco_gt(s) for s in mine]
        if mine:
            self.metric.process(data_batch, mine)

    @property
    def _coco_from_samples(self) -> bool:
        """mmdet's CocoMetric without an ``ann_file`` builds its ground truth from raw ``instances``."""
        from mmdet.evaluation import CocoMetric  # imported with the wrapped metric already

        return type(self.metric) is CocoMetric and getattr(self.metric, "_coco_api", None) is None

    def _with_coco_gt(self, sample: dict) -> dict:
        sample = dict(sample)
        anns = []
        for key, flag in (("gt_instances", 0), ("ignored_instances", 1)):
            inst = sample.get(key)
            if inst is None:
                continue
            for box, label in zip(inst["bboxes"].tolist(), inst["labels"].tolist()):
                anns.append(dict(bbox=box, bbox_label=int(label), ignore_flag=flag))
        sample["instances"] = anns
        # COCO wants integer image ids
        sample["img_id"] = self._coco_ids.setdefault(sample.get("img_id"), len(self._coco_ids))
        return sample

    def compute_metrics(self, results: list) -> dict:  # pragma: no cover - evaluate() delegates
        raise NotImplementedError

    def evaluate(self, size: int) -> dict:
        if not self.metric.results:
            print_log(f"TaskMetric: no validation sample is labelled for {self.task!r}", logger="current")
            return {}
        # ``size`` is the whole validation set, an upper bound of this task's share: nothing is truncated
        results = self.metric.evaluate(size)
        self._coco_ids.clear()
        # the inner metric may add its own prefix; keep its key, put the task in front
        return {f"{self.prefix}/{k}": v for k, v in results.items()}
