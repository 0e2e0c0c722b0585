"""Task balancing methods: fixed, uncertainty (Kendall), DWA (Liu), PCGrad (Yu)."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import OptimWrapper

from multitask_vision.models import MultiTaskModel
from multitask_vision.registry import MODELS


def losses(**per_task):
    return {
        t: {f"{t}.loss_a": torch.tensor(float(v)), f"{t}.acc": torch.tensor(50.0)}
        for t, v in per_task.items()
    }


def test_uncertainty_weighting_formula_and_learning():
    w = MODELS.build(dict(type="UncertaintyWeighting", init_log_var=0.5))
    w.bind(["det", "seg"])
    out = w(losses(det=2.0))  # only the labelled task appears
    assert set(out) == {"det"}
    torch.testing.assert_close(out["det"]["det.loss_a"], torch.tensor(2.0 * math.exp(-0.5)))
    assert float(out["det"]["det.loss_uncertainty"]) == 0.5
    assert float(out["det"]["det.acc"]) == 50.0  # not a loss: untouched
    # the optimum of exp(-s) L + s is s = log L: gradient descent gets there
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        o = w(losses(det=4.0))["det"]
        (o["det.loss_a"] + o["det.loss_uncertainty"]).backward()
        opt.step()
    assert abs(float(w.log_vars["det"]) - math.log(4.0)) < 0.05
    assert float(w.log_vars["seg"]) == 0.5  # no seg batch, no change


def test_dwa_weights_follow_loss_ratios():
    w = MODELS.build(dict(type="DWAWeighting", window=2, temperature=1.0))
    w.bind(["a", "b"])
    w.train()
    seq = [dict(a=4.0, b=4.0)] * 2 + [dict(a=2.0, b=4.0)] * 2  # a halves, b stays
    for step in seq:
        out = w(losses(**step))
        assert float(out["a"]["a.weight"]) == 1.0  # two full windows not seen yet
    out = w(losses(a=1.0, b=1.0))
    ra, rb = 2.0 / 4.0, 4.0 / 4.0
    expect_a = 2 * math.exp(ra) / (math.exp(ra) + math.exp(rb))
    assert float(out["a"]["a.weight"]) == pytest.approx(expect_a, rel=1e-5)
    assert float(out["a"]["a.weight"]) + float(out["b"]["b.weight"]) == pytest.approx(2.0)
    # the statistics are buffers: they travel in the checkpoint
    assert {"last", "before", "acc", "count", "step"} <= set(dict(w.named_buffers()))


def test_pcgrad_projects_conflicting_gradients():
    w = MODELS.build(dict(type="PCGradWeighting"))
    shared = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    head = torch.nn.Parameter(torch.tensor(1.0))
    # task gradients on `shared`: g1 = (1, 0), g2 = (-1, 1): conflicting (dot = -1)
    l1 = shared @ torch.tensor([1.0, 0.0]) * head
    l2 = shared @ torch.tensor([-1.0, 1.0])
    stats = w.backward({"t1": l1, "t2": l2}, [shared])
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2  # (0.5, 0.5)
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1  # (0, 1)
    torch.testing.assert_close(shared.grad, p1 + p2)
    assert float(head.grad) == 1.0  # task-specific parameters keep their plain gradient
    assert stats["pcgrad.conflicts"] == 1.0


def test_pcgrad_train_step_on_model(tiny_blocks, batch):
    torch.manual_seed(0)
    model = MultiTaskModel(blocks=tiny_blocks, task_weighting=dict(type="PCGradWeighting"))
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for n in ("backbone", "neck") for p in model.blocks[n].parameters()}
    inputs, samples = batch([("detection", "segmentation"), ("detection", "segmentation")])
    before = [p.detach().clone() for p in model.parameters()]
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log = model.train_step(dict(inputs=list(inputs.mul(40).add(120).clamp(0, 255).to(torch.uint8)),
                                data_samples=samples), wrapper)  # fmt: skip
    assert "pcgrad.conflicts" in log and "detection.loss_cls" in log
    changed = {n: not torch.equal(a, b) for a, (n, b) in zip(before, model.named_parameters())}
    assert any(v for n, v in changed.items() if n.startswith("blocks.backbone."))
    assert any(v for n, v in changed.items() if n.startswith("blocks.det_head."))
    assert not any(
        v for n, v in changed.items() if n.startswith("blocks.depth_head.")
    )  # unlabelled: untouched
