"""Task weighting: how per-task losses are balanced before mmengine sums them.

A weighting module receives ``{task: {loss_name: tensor}}`` for the tasks labelled in the batch and returns
the same structure, weighted, plus a logged ``<task>.weight`` per task. Only values whose key contains
``'loss'`` are weighted (and summed by mmengine); accuracies etc. are logged unchanged.

* :class:`FixedTaskWeighting`: constant weights.
* :class:`UncertaintyWeighting`: learned homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018):
  ``exp(-s_t) * L_t + s_t`` with a learned ``s_t = log sigma_t^2`` per task.
* :class:`DWAWeighting`: Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): ``w_t ∝ exp(r_t / T)``
  with ``r_t`` the ratio of the task's mean loss over the last two windows of iterations.
* :class:`PCGradWeighting`: gradient surgery (Yu et al., NeurIPS 2020): task gradients on the shared blocks
  that conflict (negative dot product) are projected onto each other's normal plane before summing.
"""

from __future__ import annotations

import random

import torch
import torch.distributed as dist
from torch import nn

from multitask_vision.registry import MODELS
from multitask_vision.structures import is_loss_key, loss_key

Losses = dict[str, dict[str, torch.Tensor]]


def task_total(named: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of a task's loss terms (lists, as some mmdet heads return per level, are summed too)."""
    return sum(v for k, v in named.items() if is_loss_key(k))  # type: ignore[return-value]


class TaskWeighting(nn.Module):
    """Base class; ``tasks`` is set by the model (the graph's task names) through :meth:`bind`."""

    #: whether the model must hand the per-task losses to :meth:`backward` instead of summing them
    needs_task_gradients = False

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []

    def bind(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)

    def weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, losses: Losses) -> Losses:
        weights = self.weights(losses)
        out = {}
        for task, named in losses.items():
            w = weights[task]
            out[task] = {k: v * w if is_loss_key(k) else v for k, v in named.items()}
            out[task][loss_key(task, "weight")] = (
                w.detach() if isinstance(w, torch.Tensor) else torch.tensor(float(w))
            )
        return out


@MODELS.register_module()
class FixedTaskWeighting(TaskWeighting):
    """Constant weight per task (1.0 for tasks not named)."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.fixed = dict(weights or {})
        for task, w in self.fixed.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"task_weighting.weights[{task!r}] must be a number >= 0, got {w!r}")

    def bind(self, tasks: list[str]) -> None:
        unknown = sorted(set(self.fixed) - set(tasks))
        if unknown:
            raise ValueError(
                f"task_weighting.weights names tasks no head predicts: {unknown} (heads: {tasks})"
            )
        super().bind(tasks)

    def weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        return {t: torch.tensor(float(self.fixed.get(t, 1.0))) for t in losses}


@MODELS.register_module()
class UncertaintyWeighting(TaskWeighting):
    """``exp(-s_t) * L_t + s_t`` per task, ``s_t`` learned (initialised to ``init_log_var``).

    The regulariser ``s_t`` is added as ``<task>.loss_uncertainty`` so mmengine sums and logs it.
    """

    def __init__(self, init_log_var: float = 0.0) -> None:
        super().__init__()
        self.init_log_var = float(init_log_var)
        self.log_vars = nn.ParameterDict()

    def bind(self, tasks: list[str]) -> None:
        super().bind(tasks)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.tensor(self.init_log_var)) for t in tasks})

    def weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        return {t: torch.exp(-self.log_vars[t]) for t in losses}

    def forward(self, losses: Losses) -> Losses:
        out = super().forward(losses)
        for task in losses:
            out[task][loss_key(task, "loss_uncertainty")] = self.log_vars[task]
        return out


@MODELS.register_module()
class DWAWeighting(TaskWeighting):
    """Dynamic Weight Average over windows of ``window`` training iterations.

    ``w_t = K * softmax(r / temperature)_t`` over the ``K`` tasks, ``r_t = mean L_t(previous window) /
    mean L_t(the window before)``; weights are 1 until two windows have been seen. The statistics are buffers:
    they are checkpointed and resume exactly, and are averaged over processes under DDP.
    """

    acc: torch.Tensor
    count: torch.Tensor
    last: torch.Tensor
    before: torch.Tensor
    step: torch.Tensor

    def __init__(self, window: int = 50, temperature: float = 2.0) -> None:
        super().__init__()
        if window < 1 or temperature <= 0:
            raise ValueError(
                f"DWAWeighting needs window >= 1 and temperature > 0, got {window}, {temperature}"
            )
        self.window = int(window)
        self.temperature = float(temperature)

    def bind(self, tasks: list[str]) -> None:
        super().bind(tasks)
        k = len(tasks)
        self.register_buffer("acc", torch.zeros(k))  # loss sums of the current window
        self.register_buffer("count", torch.zeros(k))
        self.register_buffer("last", torch.zeros(k))  # mean loss of the previous window (0 = unseen)
        self.register_buffer("before", torch.zeros(k))  # mean loss of the window before that
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_weights(self) -> torch.Tensor:
        """(K,) weights in task order from the two finished windows."""
        k = len(self.tasks)
        seen = (self.last > 0) & (self.before > 0)
        if not bool(seen.all()):
            return torch.ones(k, device=self.last.device)
        ratio = self.last / self.before
        return k * torch.softmax(ratio / self.temperature, dim=0)

    @torch.no_grad()
    def _update(self, losses: Losses) -> None:
        if not self.training:
            return
        acc = torch.zeros_like(self.acc)
        count = torch.zeros_like(self.count)
        for task, named in losses.items():
            i = self.tasks.index(task)
            acc[i] += float(task_total(named).detach())
            count[i] += 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(acc)
            dist.all_reduce(count)
        self.acc += acc
        self.count += count
        self.step += 1
        if int(self.step) % self.window == 0:
            mean = torch.where(self.count > 0, self.acc / self.count.clamp(min=1), self.last)
            self.before.copy_(torch.where(self.count > 0, self.last, self.before))
            self.last.copy_(mean)
            self.acc.zero_()
            self.count.zero_()

    def weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        w = self.current_weights()
        self._update(losses)
        return {t: w[self.tasks.index(t)] for t in losses}


@MODELS.register_module()
class PCGradWeighting(TaskWeighting):
    """PCGrad on the blocks shared by several tasks; each task's loss terms keep weight 1.

    The model calls :meth:`backward` with every task's total loss instead of one ``loss.backward()``.
    Not supported with DDP, AMP loss scaling or gradient accumulation (a clear error says so).
    """

    needs_task_gradients = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        return {t: torch.tensor(1.0) for t in losses}

    def backward(self, task_losses: dict[str, torch.Tensor], shared: list[nn.Parameter]) -> dict[str, float]:
        """Set ``.grad`` of all parameters: projected task gradients on ``shared``, plain ones elsewhere."""
        if dist.is_available() and dist.is_initialized():
            raise RuntimeError(
                "PCGradWeighting does not support distributed training yet; use another weighting"
            )
        tasks = list(task_losses)
        total = sum(task_losses.values())
        if len(tasks) < 2 or not shared:
            total.backward()  # type: ignore[union-attr]
            return {"pcgrad.conflicts": 0.0}
        grads: list[torch.Tensor] = []
        for t in tasks:
            parts = torch.autograd.grad(task_losses[t], shared, retain_graph=True, allow_unused=True)
            grads.append(
                torch.cat(
                    [(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(parts, shared)]
                )
            )
        projected, conflicts = [], 0
        for i, grad in enumerate(grads):
            g = grad.clone()
            others = [j for j in range(len(grads)) if j != i]
            self.rng.shuffle(others)
            for j in others:
                dot = torch.dot(g, grads[j])
                if dot < 0:
                    conflicts += 1
                    g -= dot / grads[j].pow(2).sum().clamp(min=1e-20) * grads[j]
            projected.append(g)
        total.backward()  # type: ignore[union-attr]  # task-specific parameters get their ordinary gradients
        merged = torch.stack(projected).sum(0)
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = merged[offset : offset + n].view_as(p).clone()
            offset += n
        return {"pcgrad.conflicts": conflicts / (len(tasks) * (len(tasks) - 1))}
