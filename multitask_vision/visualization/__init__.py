"""Seeing what a model does: per-task drawers (registered in ``DRAWERS``) and per-sample grids; browsing the
ground truth of a dataset without a model."""

from multitask_vision.visualization.browse import GroundTruthRenderer, source_tasks
from multitask_vision.visualization.drawers import (
    DepthDrawer,
    DetectionDrawer,
    SegmentationDrawer,
    TaskDrawer,
    TaskPanels,
)
from multitask_vision.visualization.grid import (
    DrawerError,
    GridRenderer,
    SampleGrid,
    TaskRow,
    predict_per_head,
    task_styles,
)
from multitask_vision.visualization.predictions import PredictionPainter

__all__ = [
    "DepthDrawer",
    "DetectionDrawer",
    "DrawerError",
    "GridRenderer",
    "GroundTruthRenderer",
    "PredictionPainter",
    "SampleGrid",
    "SegmentationDrawer",
    "TaskDrawer",
    "TaskPanels",
    "TaskRow",
    "predict_per_head",
    "source_tasks",
    "task_styles",
]
