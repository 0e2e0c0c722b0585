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


# A source's annotation kind -> the sample field its ground truth is packed in (``PackMultiTaskInputs``).
GT_FIELDS = {"instances": "gt_instances", "sem_seg": "gt_sem_seg", "depth": "gt_depth_map"}


def labelled_tasks(sample: BaseDataElement) -> tuple[str, ...]:
    """Tasks a data sample (ours, or an mmdet/mmseg one) is labelled for: its ``tasks`` metainfo."""
    return tuple(sample.metainfo.get("tasks", ()))


# ---- the names of logged losses ------------------------------------------------------------------------------
# A head's loss term ``name`` is logged as ``<task>.<name>``, or ``<task>.<head>.<name>`` when several heads
# share the task; task-level values (a task weight, a weighting's regulariser) are ``<task>.<name>``. mmengine's
# ``BaseModel.parse_losses`` sums every value whose key contains ``'loss'`` into the loss it back-propagates.


def loss_key(task: str, name: str, head: str | None = None) -> str:
    """The logged key of the loss term (or logged value) ``name`` of ``task`` (of ``head``, when given)."""
    return f"{task}.{head}.{name}" if head else f"{task}.{name}"


def split_loss_key(key: str) -> tuple[str | None, str]:
    """``(task, rest)`` of a key made by :func:`loss_key`; ``(None, key)`` for a key of no task (``'loss'``)."""
    task, sep, rest = key.partition(".")
    return (task, rest) if sep else (None, key)


def is_loss_key(key: str) -> bool:
    """Whether mmengine sums the value of ``key`` into the training loss (its rule: the key contains 'loss')."""
    return "loss" in key
