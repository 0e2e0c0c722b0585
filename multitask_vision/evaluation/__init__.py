"""Evaluation: task-routed wrappers around mmdet's and mmseg's metrics."""

from multitask_vision.evaluation.task_metric import TaskMetric

__all__ = ["TaskMetric"]
