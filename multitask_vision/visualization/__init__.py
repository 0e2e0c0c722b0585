"""Seeing what a model does: per-task drawers (registered in ``DRAWERS``) and per-sample grids."""

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
    "PredictionPainter",
    "SampleGrid",
    "SegmentationDrawer",
    "TaskDrawer",
    "TaskPanels",
    "TaskRow",
    "predict_per_head",
    "task_styles",
]
