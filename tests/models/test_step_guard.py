"""MultiTaskModel.train_step never applies a non-finite step: plain, PCGrad and AMP (loss-scaler) paths."""

from __future__ import annotations

import contextlib
import copy

import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
import pytest
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from multitask_vision.models import MultiTaskModel


def data(batch, tasks):
    inputs, samples = batch(tasks)
    pixels = inputs.mul(40).add(120).clamp(0, 255).to(torch.uint8)
    return dict(inputs=list(pixels), data_samples=samples)


@contextlib.contextmanager
def nan_outputs(model, head):
    """The head's forward returns nan (as a diverged head does), so its loss is nan."""
    handle = model.blocks[head].register_forward_hook(lambda module, args, out: out * float("nan"))
    try:
        yield
    finally:
        handle.remove()


def snapshot(model):
    return copy.deepcopy(model.state_dict())


def changed(model, before, prefix):
    return any(not torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith(prefix))


def head_param(model, head):
    """A parameter of ``head`` and its state-dict name."""
    name, param = next(iter(model.blocks[head].named_parameters()))
    return f"blocks.{head}.{name}", param


def assert_same_state(model, before):
    after = model.state_dict()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"{name} changed in a skipped step"


@pytest.fixture
def model(tiny_blocks):
    torch.manual_seed(0)
    return MultiTaskModel(blocks=tiny_blocks)


def adamw(model):
    return OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))


def test_nonfinite_loss_skips_the_step_and_restores_buffers(model, batch):
    wrapper = adamw(model)
    before = snapshot(model)  # weights and BatchNorm statistics
    with nan_outputs(model, "depth_head"):
        log = model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)
    fault = model.last_step_fault
    assert fault is not None and fault.kind == "loss" and fault.tasks == ("depth",)
    assert "depth.loss_depth_l1" in fault.detail
    assert_same_state(model, before)  # no step, and the forward pass's BatchNorm updates undone
    assert not wrapper.optimizer.state  # AdamW never stepped: no moments from the bad batch
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert "loss" not in log and "depth.loss_depth_l1" not in log  # non-finite values kept out of the logs
    assert "segmentation.loss_seg" in log

    model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)  # a good batch steps again
    assert model.last_step_fault is None
    assert changed(model, before, "blocks.depth_head.")


def test_nonfinite_gradient_names_the_head_task(model, batch):
    wrapper = adamw(model)
    name, param = head_param(model, "det_head")
    hook = param.register_hook(lambda g: g * float("nan"))
    before = snapshot(model)
    model.train_step(data(batch, [("detection", "segmentation")] * 2), wrapper)
    hook.remove()
    fault = model.last_step_fault
    assert fault is not None and fault.kind == "gradient" and fault.tasks == ("detection",)
    assert name in str(fault)
    assert_same_state(model, before)


def test_pcgrad_path_is_guarded(tiny_blocks, batch):
    torch.manual_seed(0)
    model = MultiTaskModel(blocks=tiny_blocks, task_weighting=dict(type="PCGradWeighting"))
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    before = snapshot(model)
    with nan_outputs(model, "depth_head"):
        model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)
    assert model.last_step_fault is not None and model.last_step_fault.tasks == ("depth",)
    assert_same_state(model, before)
    model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)
    assert model.last_step_fault is None


@pytest.fixture
def amp_wrapper(model, monkeypatch):
    """mmengine's AmpOptimWrapper with torch's CPU GradScaler: the wrapper refuses to be built without a GPU
    (only that check is patched), and its CUDA GradScaler would disable itself here."""
    monkeypatch.setattr(amp_module, "is_cuda_available", lambda: True)
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01), dtype="bfloat16")
    wrapper.loss_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    return wrapper


def test_amp_scaler_skips_are_not_faults(model, batch, amp_wrapper):
    """An inf gradient under AMP is the loss scaler's business: it skips the step and lowers its scale; the
    guard neither counts it nor steps in."""
    _, param = head_param(model, "det_head")
    hook = param.register_hook(lambda g: g * float("inf"))
    before = snapshot(model)
    model.train_step(data(batch, [("detection", "segmentation")] * 2), amp_wrapper)
    hook.remove()
    assert model.last_step_fault is None
    assert amp_wrapper.loss_scaler.get_scale() == 2.0**9  # the scaler saw the inf and backed off
    assert not changed(model, before, "blocks.det_head.")  # ...and skipped the step


def test_amp_nonfinite_loss_is_a_fault(model, batch, amp_wrapper):
    before = snapshot(model)
    with nan_outputs(model, "depth_head"):
        model.train_step(data(batch, [("depth", "segmentation")] * 2), amp_wrapper)
    assert model.last_step_fault is not None and model.last_step_fault.tasks == ("depth",)
    assert amp_wrapper.loss_scaler.get_scale() == 2.0**10  # the scale is not punished for a bad batch
    assert_same_state(model, before)
    model.train_step(data(batch, [("depth", "segmentation")] * 2), amp_wrapper)
    assert model.last_step_fault is None
    assert changed(model, before, "blocks.depth_head.")


def test_a_buffer_the_forward_pass_makes_nonfinite_is_a_fault_but_one_that_was_already_is_not(model, batch):
    """BatchNorm statistics overflow before any loss does: that step is skipped and the statistics restored.
    A buffer non-finite by design (a quantization observer's initial +-inf, a -inf mask) stops nothing."""
    wrapper = adamw(model)
    model.blocks["seg_head"].register_buffer("mask", torch.tensor([float("-inf"), 0.0]))
    model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)
    assert model.last_step_fault is None

    norm = next(m for m in model.blocks["seg_head"].modules() if isinstance(m, torch.nn.BatchNorm2d))

    def overflow(module, args):  # the statistics overflow (BatchNorm then keeps inf in its running average)
        module.running_var.fill_(float("inf"))

    handle = norm.register_forward_pre_hook(overflow)
    before = snapshot(model)
    model.train_step(data(batch, [("depth", "segmentation")] * 2), wrapper)
    handle.remove()
    fault = model.last_step_fault
    assert fault is not None and fault.kind == "buffer" and fault.tasks == ("segmentation",)
    assert "running_var" in fault.detail
    assert torch.isfinite(norm.running_var).all()
    for name, value in model.state_dict().items():
        if name != "blocks.seg_head.mask":
            assert torch.equal(value, before[name]), name


def test_nonfinite_tensors_finds_nan_and_inf_but_not_large_finite_values():
    """The fast path is one 2-norm: squares of large finite values overflow it, which must not be a fault."""
    from multitask_vision.models.step_guard import nonfinite_tensors

    big = torch.full((4,), 1e30)  # finite, but its 2-norm is inf in float32
    assert not torch.isfinite(torch.linalg.vector_norm(big))
    assert nonfinite_tensors([("big", big), ("ok", torch.ones(3))]) == []
    bad = [("nan", torch.tensor([1.0, float("nan")])), ("inf", torch.tensor([-float("inf")])), ("big", big)]
    assert nonfinite_tensors(bad + [("ints", torch.ones(2, dtype=torch.long))]) == ["nan", "inf"]
