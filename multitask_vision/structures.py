"""``MultiTaskDataSample``: one sample's inputs' metadata, ground truth and predictions for every task.

It is a superset of mmdet's ``DetDataSample`` and mmseg's ``SegDataSample`` (same field names and types), so
mmdet dense heads and mmseg decode heads read it unchanged. Which tasks a sample is labelled for is metainfo
``tasks`` (a tuple of task names, set by the dataset source); ``source`` names the dataset it came from.
"""

from __future__ import annotations

from mmengine.structures import BaseDataElement, InstanceData, PixelData


def _field(name: str, dtype: type):
    private = "_" + name

    def getter(self):
        return getattr(self, private)

    def setter(self, value):
        self.set_field(value, private, dtype=dtype)

    def deleter(self):
        delattr(self, private)

    return property(getter, setter, deleter, doc=f"{name} ({dtype.__name__})")


class MultiTaskDataSample(BaseDataElement):
    """Data sample for multi-task models.

    Fields (all optional): ``gt_instances`` / ``pred_instances`` / ``ignored_instances`` (InstanceData with
    ``bboxes`` (N, 4) xyxy in pixels and ``labels`` (N,)), ``gt_sem_seg`` / ``pred_sem_seg`` (PixelData ``data``
    (1, H, W) long, 255 = ignore), ``seg_logits``, ``gt_depth_map`` / ``pred_depth_map`` (PixelData ``data``
    (1, H, W) float metres, 0 = invalid).
    """

    gt_instances = _field("gt_instances", InstanceData)
    pred_instances = _field("pred_instances", InstanceData)
    ignored_instances = _field("ignored_instances", InstanceData)
    gt_sem_seg = _field("gt_sem_seg", PixelData)
    pred_sem_seg = _field("pred_sem_seg", PixelData)
    seg_logits = _field("seg_logits", PixelData)
    gt_depth_map = _field("gt_depth_map", PixelData)
    pred_depth_map = _field("pred_depth_map", PixelData)


def labelled_tasks(sample: BaseDataElement) -> tuple[str, ...]:
    """Tasks a data sample (ours, or an mmdet/mmseg one) is labelled for: its ``tasks`` metainfo."""
    return tuple(sample.metainfo.get("tasks", ()))
