"""Every shipped training config builds its model, and the model trains one step on a toy batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import multitask_vision
from multitask_vision.registry import MODELS
from tests.conftest import make_sample

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.py") if "_base_" not in p.parts)


@pytest.mark.parametrize(
    "path",
    CONFIGS,
    ids=[str(p.relative_to(p.parents[1] if p.parent.name != "configs" else p.parent)) for p in CONFIGS],
)
def test_config_builds_and_steps(path):
    multitask_vision.register_all_modules()
    cfg = Config.fromfile(path)
    if "model" not in cfg:
        pytest.skip("not a training config")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    tasks = model.tasks
    inputs = torch.randn(2, 3, 64, 64)
    kinds = {t: next(k for k in ("detection", "segmentation", "depth") if k[:3] in t) for t in tasks}
    samples = [make_sample(tasks, seed=i, kinds=kinds) for i in range(2)]
    for s in samples:  # num_classes differ per config: keep seg labels in range
        if "gt_sem_seg" in s:
            s.gt_sem_seg.data.clamp_(max=1)
    losses = model(inputs, samples, mode="loss")
    assert {k.split(".")[0] for k in losses} == set(tasks)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
