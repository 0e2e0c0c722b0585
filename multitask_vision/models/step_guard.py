"""Training steps that never apply a non-finite update.

:meth:`MultiTaskModel.train_step <multitask_vision.models.multitask_model.MultiTaskModel.train_step>` checks, after
the backward pass and before the optimizer step, every loss term and (without AMP) the gradients. When one is nan
or inf the step is skipped: no optimizer step, gradients zeroed, and the buffers the forward pass wrote
(BatchNorm statistics, DWA windows) restored, so the model is exactly as before the batch. The model records the
:class:`StepFault` (``model.last_step_fault``) and logs it; ``NonFiniteGuardHook`` counts consecutive faults and
stops training.

Under AMP (mmengine's ``AmpOptimWrapper``) an inf gradient is how the fp16 loss scaler finds its scale too large:
the scaler skips that step and lowers the scale itself, so gradients are not checked and such steps are not faults.
A non-finite *loss* is one under AMP too (the scaler cannot fix the forward pass). Under DDP the processes agree on
the decision (one all-reduce of a flag), so they all skip the same steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub
from torch import nn

from multitask_vision.structures import is_loss_key


@dataclass(frozen=True)
class StepFault:
    """A skipped training step: what was not finite (``'loss'`` or ``'gradient'``), in which tasks, and where."""

    iteration: int | None  # 1-based, as mmengine's log counts; None outside a Runner
    kind: str
    tasks: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        where = f"iteration {self.iteration}" if self.iteration is not None else "a training step"
        if self.tasks:
            names = ", ".join(repr(t) for t in self.tasks)
            owner = f"task{'s' if len(self.tasks) > 1 else ''} {names}"
        else:
            owner = "the blocks shared by the tasks"
        return f"{where}: non-finite {self.kind} in {owner} ({self.detail})"


def current_iteration() -> int | None:
    """The Runner's iteration being trained, 1-based (mmengine's ``RuntimeInfoHook`` keeps it in the message hub)."""
    it = MessageHub.get_current_instance().get_info("iter")
    return None if it is None else int(it) + 1


def nonfinite_losses(log_vars: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms (keys containing ``'loss'``, the total excluded) that are nan or inf (one device sync)."""
    terms = {
        k: v for k, v in log_vars.items() if is_loss_key(k) and k != "loss" and isinstance(v, torch.Tensor)
    }
    if not terms:
        return {}
    finite = torch.isfinite(torch.stack([v.detach().float().reshape(()) for v in terms.values()])).tolist()
    return {k: float(v.detach()) for (k, v), ok in zip(terms.items(), finite) if not ok}


def floating_items(named_tensors: Iterable[tuple[str, object]]) -> list[tuple[str, torch.Tensor]]:
    """The non-empty floating-point tensors of ``(name, value)`` pairs (what the non-finite checks look at)."""
    return [
        (n, t)
        for n, t in named_tensors
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()
    ]


def nonfinite_tensors(named_tensors: Iterable[tuple[str, object]]) -> list[str]:
    """Names of the floating-point tensors that hold a nan or inf (other values are ignored). The common case
    costs one 2-norm over all of them: a nan or inf anywhere makes it non-finite. Only then is every tensor
    checked on its own, which also clears large finite values whose squares overflowed the norm. (A 2-norm, not
    a max-norm: on CPU ``torch._foreach_norm`` is ~9x slower for ``inf`` than for 2, 38 vs 4 ms for ResNet-18's
    gradients, see benchmarks/README.md.)"""
    items = floating_items(named_tensors)
    if not items:
        return []
    total = torch.nn.utils.get_total_norm([t.detach() for _, t in items], norm_type=2.0)
    if bool(torch.isfinite(total)):
        return []
    return [name for name, t in items if not bool(torch.isfinite(t).all())]


def nonfinite_gradients(named_parameters: Iterable[tuple[str, nn.Parameter]]) -> list[str]:
    """Names of the parameters whose gradient holds a nan or inf."""
    return nonfinite_tensors((name, p.grad) for name, p in named_parameters if p.grad is not None)


def walk_tensors(obj: object, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """``(dotted path, tensor)`` of every tensor in nested dicts / lists / tuples (a checkpoint, a state dict)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from walk_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from walk_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def on_any_process(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag or'ed over the processes of a distributed run (one all-reduce; a no-op in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


class BufferSnapshot:
    """Copies of a module's buffers, to undo what a forward pass wrote into them (BatchNorm running statistics,
    DWA's loss windows, QAT observers, which may even change a buffer's shape) when its step is skipped.
    Buffers are small: copying them costs far less than a step."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._saved = {name: b.detach().clone() for name, b in module.named_buffers()}

    def newly_nonfinite(self) -> list[str]:
        """Buffers that hold a nan or inf now but did not when the snapshot was taken. Buffers that are
        non-finite by design (an observer's initial +-inf, a -inf attention mask) are left alone."""
        bad = nonfinite_tensors(self._module.named_buffers())
        return [name for name in bad if name in self._saved and bool(torch.isfinite(self._saved[name]).all())]

    @torch.no_grad()
    def restore(self) -> None:
        for name, buffer in self._module.named_buffers():
            saved = self._saved.get(name)
            if saved is not None:
                buffer.resize_(saved.shape).copy_(saved)


def describe(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
