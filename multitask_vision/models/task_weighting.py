"""Task weighting: how per-task losses are balanced before mmengine sums them.

A weighting module receives ``{task: {loss_name: tensor}}`` and returns the same structure, weighted.
Only values whose key contains ``'loss'`` are weighted (the rest, e.g. accuracies, are logged as they are).
"""

from __future__ import annotations

import torch
from torch import nn

from multitask_vision.registry import MODELS


class TaskWeighting(nn.Module):
    """Base class; ``tasks`` is set by the model (the graph's task names)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []

    def bind(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)

    def forward(self, losses: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        raise NotImplementedError


@MODELS.register_module()
class FixedTaskWeighting(TaskWeighting):
    """Constant weight per task (default 1.0 for tasks not named)."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights or {})
        for task, w in self.weights.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"task_weighting.weights[{task!r}] must be a number >= 0, got {w!r}")

    def bind(self, tasks: list[str]) -> None:
        unknown = sorted(set(self.weights) - set(tasks))
        if unknown:
            raise ValueError(
                f"task_weighting.weights names tasks no head predicts: {unknown} (heads: {tasks})"
            )
        super().bind(tasks)

    def forward(self, losses):
        out = {}
        for task, named in losses.items():
            w = float(self.weights.get(task, 1.0))
            out[task] = {k: v * w if "loss" in k else v for k, v in named.items()}
        return out
