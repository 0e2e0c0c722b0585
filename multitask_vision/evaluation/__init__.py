"""Evaluation: task-routed wrappers around mmdet's and mmseg's metrics, and the multi-task Δm."""

from multitask_vision.evaluation.evaluator import MultiTaskEvaluator, delta_m
from multitask_vision.evaluation.task_metric import TaskMetric

__all__ = ["MultiTaskEvaluator", "TaskMetric", "delta_m"]
