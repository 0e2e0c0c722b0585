"""``MultiTaskModel``: an mmengine ``BaseModel`` that runs a :class:`BlockGraph` of blocks.

It knows no task names and no ground-truth formats: which samples a head trains on comes from the samples'
``tasks`` metainfo, and what a head does with them is up to its adapter.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper
from torch import nn

from multitask_vision.models.adapters.base import BlockAdapter, default_adapter
from multitask_vision.models.block_types import UnknownTypeError, resolve_block_type, scope_context
from multitask_vision.models.checkpoint_init import load_block_weights
from multitask_vision.models.graph import IMAGE_INPUT, BlockGraph, BlockNode, GraphError
from multitask_vision.models.spec import IMAGE_SPEC, Spec, select, select_value
from multitask_vision.models.step_guard import (
    BufferSnapshot,
    StepFault,
    current_iteration,
    describe,
    nonfinite_gradients,
    nonfinite_losses,
    on_any_process,
)
from multitask_vision.registry import ADAPTERS, MODELS
from multitask_vision.structures import is_loss_key, labelled_tasks, loss_key, split_loss_key
from multitask_vision.utils.errors import UserError


class ResolvedBlock(NamedTuple):
    """What a block's config resolves to before it is built."""

    scope: str
    cls: Any  # a class, or for a timm model a TimmModel (see block_types.resolve_block_type)
    adapter: BlockAdapter
    is_head: bool


def take_samples(x: Any, idx: list[int]) -> Any:
    """Index every tensor in ``x`` (tensor / tuple / list / dict) along the batch dimension."""
    if isinstance(x, torch.Tensor):
        return x[idx]
    if isinstance(x, dict):
        return {k: take_samples(v, idx) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(take_samples(v, idx) for v in x)
    return x


def to_float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: to_float(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_float(v) for v in x)
    return x


@MODELS.register_module()
class MultiTaskModel(BaseModel):
    """A graph of blocks with task heads.

    Args:
        blocks: block dicts (see :mod:`multitask_vision.models.graph`).
        data_preprocessor: config of the preprocessor (default ``MultiTaskDataPreprocessor``).
        task_weighting: config of a task weighting module (default fixed weights of 1).
        fp32_head_losses: compute head losses with autocast off and float inputs, so ``--amp`` (fp16 or
            bf16) never reaches loss kernels that lack half-precision versions.
        init_from: checkpoints to start blocks from, applied by ``init_weights()``: a list of
            ``dict(checkpoint=path, prefix_map={'bbox_head.': 'det_head.', ...}, strict=False)``
            (see :mod:`multitask_vision.models.checkpoint_init`).
    """

    def __init__(
        self,
        blocks: Sequence[dict],
        data_preprocessor: dict | nn.Module | None = None,
        task_weighting: dict | None = None,
        fp32_head_losses: bool = True,
        init_from: Sequence[dict] | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type="MultiTaskDataPreprocessor")
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.fp32_head_losses = fp32_head_losses
        self.init_from = [dict(x) for x in (init_from or [])]
        for i, entry in enumerate(self.init_from):
            unknown = set(entry) - {"checkpoint", "prefix_map", "strict"}
            if unknown or "checkpoint" not in entry or "prefix_map" not in entry:
                raise ValueError(
                    f"model.init_from[{i}] needs checkpoint= and prefix_map= (optional strict=), got {sorted(entry)}"
                )

        self._resolved: dict[str, ResolvedBlock] = {}
        self.graph = BlockGraph(blocks, is_head=lambda node: self._resolve(node).is_head)
        self.blocks = nn.ModuleDict()
        self.adapters: dict[str, BlockAdapter] = {}
        self.specs: dict[str, Spec] = {IMAGE_INPUT: IMAGE_SPEC}
        for name in self.graph.order:
            self._build_block(self.graph.nodes[name])

        tasks = self.graph.tasks
        # a head's losses are named by its task, and by its name too when it shares the task with another head
        self._loss_head_name = {
            head.name: head.name if sum(h.task == head.task for h in self.graph.heads) > 1 else None
            for head in self.graph.heads
        }
        self.task_weighting = MODELS.build(task_weighting or dict(type="FixedTaskWeighting"))
        self.task_weighting.bind(tasks)
        self.last_step_fault: StepFault | None = None  # set by every train_step (see step_guard)

    def _resolve(self, node: BlockNode) -> ResolvedBlock:
        """The class a block's ``type`` names, its scope and its adapter (resolved once per block)."""
        if node.name in self._resolved:
            return self._resolved[node.name]
        try:
            scope, cls = resolve_block_type(node.type)
            adapter_name = node.adapter or default_adapter(scope)
        except (UnknownTypeError, ValueError) as e:
            raise GraphError(f"block {node.name!r}: {e}") from None
        if adapter_name is None or adapter_name not in ADAPTERS.module_dict:
            raise GraphError(
                f"block {node.name!r}: no adapter {adapter_name!r} for scope {scope!r} "
                f"(registered adapters: {sorted(ADAPTERS.module_dict)})"
            )
        adapter = ADAPTERS.build(dict(type=adapter_name))
        resolved = self._resolved[node.name] = ResolvedBlock(scope, cls, adapter, adapter.is_head(cls))
        return resolved

    def _build_block(self, node: BlockNode) -> None:
        """Build one block in its scope, check its inputs against what feeds it and record its output spec."""
        name = node.name
        scope, cls, adapter, _ = self._resolve(node)
        with scope_context(scope):
            try:
                module = adapter.build(cls, dict(node.kwargs))
            except (TypeError, ValueError, KeyError, AssertionError) as e:
                raise GraphError(f"block {name!r} ({node.type}) could not be built: {e}") from e
        edge = f"edge {', '.join(r.text for r in node.inputs)} -> {name}"
        try:
            in_spec = self._input_spec(node)
            adapter.check_inputs(module, in_spec, edge)
            self.specs[name] = adapter.output_spec(module, in_spec)
        except (ValueError, KeyError) as e:
            msg = str(e.args[0]) if isinstance(e, KeyError) else str(e)
            raise GraphError(msg if name in msg else f"{edge}: {msg}") from None
        self.blocks[name] = module
        self.adapters[name] = adapter

    def train_step(
        self, data: dict | tuple | list, optim_wrapper, ddp: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        """mmengine's train step (forward, backward, optimizer step), guarded against non-finite numbers: a step
        whose loss, gradient or buffer is nan or inf is skipped and recorded in ``last_step_fault`` (see
        :mod:`~multitask_vision.models.step_guard`). Gradient-based task balancing (e.g. PCGrad) sets the
        gradients itself from every task's loss. ``ddp``: the distributed wrapper whose forward runs the model
        (``MultiTaskDistributedDataParallel`` passes itself), so that gradients are synchronised."""
        pcgrad = self.task_weighting.needs_task_gradients
        if pcgrad and (
            type(optim_wrapper).__name__ != "OptimWrapper" or optim_wrapper._accumulative_counts != 1
        ):
            raise UserError(
                f"{type(self.task_weighting).__name__} needs a plain OptimWrapper without accumulative_counts "
                f"(no AMP loss scaling), got {type(optim_wrapper).__name__}"
            )
        runner_model: Any = self if ddp is None else ddp
        buffers = BufferSnapshot(self)
        with optim_wrapper.optim_context(runner_model):
            data = self.data_preprocessor(data, True)
            losses = runner_model._run_forward(data, mode="loss")
        loss, log_vars = self.parse_losses(losses)
        bad_losses = nonfinite_losses(log_vars)
        if pcgrad:
            per_task: dict[str, torch.Tensor] = {}
            for key, value in losses.items():
                task = split_loss_key(key)[0]
                if is_loss_key(key) and task is not None:
                    per_task[task] = per_task.get(task, 0) + value  # type: ignore[assignment]
            stats = self.task_weighting.backward(per_task, self.shared_parameters())
            log_vars.update({k: torch.tensor(v) for k, v in stats.items()})
        else:
            optim_wrapper.backward(optim_wrapper.scale_loss(loss))
        update = pcgrad or optim_wrapper.should_update()
        # under AMP the loss scaler owns inf gradients (it skips the step and lowers its scale)
        check_grads = update and not isinstance(optim_wrapper, AmpOptimWrapper)
        fault = self._step_fault(bad_losses, check_grads, buffers, loss.device)
        if update:
            if fault is None:
                optim_wrapper.step()
            optim_wrapper.zero_grad()
        self.last_step_fault = fault
        if fault is not None:
            buffers.restore()
            print_log(f"{fault}: step skipped", logger="current", level=logging.WARNING)
            log_vars = {k: v for k, v in log_vars.items() if k not in bad_losses and k != "loss"}
        return log_vars

    def _step_fault(
        self, bad_losses: dict[str, float], check_grads: bool, buffers: BufferSnapshot, device
    ) -> StepFault | None:
        """What makes this step non-finite, if anything (the same decision on every process): a loss term, a
        gradient (unless AMP's loss scaler owns them), or a buffer the forward pass made non-finite (BatchNorm
        statistics overflow before any loss does)."""
        found = {
            "loss": list(bad_losses),
            "gradient": nonfinite_gradients(self.named_parameters()) if check_grads else [],
            "buffer": buffers.newly_nonfinite(),
        }
        agreed = on_any_process([bool(names) for names in found.values()], device)
        for (kind, names), bad in zip(found.items(), agreed):
            if not bad:
                continue
            if kind == "loss":
                tasks = tuple(sorted({str(split_loss_key(key)[0]) for key in names}))
                detail = ", ".join(f"{k}={bad_losses[k]}" for k in names)
            else:
                tasks, detail = self._tasks_of(names), describe(names)
            return StepFault(current_iteration(), kind, tasks, detail or "on another process")
        return None

    def _tasks_of(self, names: list[str]) -> tuple[str, ...]:
        """Tasks owning these parameters/buffers: ``blocks.<head>.*`` and ``task_weighting.*.<task>``."""
        head_task = {h.name: str(h.task) for h in self.graph.heads}
        tasks = set()
        for name in names:
            parts = name.split(".")
            if parts[0] == "blocks" and parts[1] in head_task:
                tasks.add(head_task[parts[1]])
            elif parts[0] == "task_weighting" and parts[-1] in self.tasks:
                tasks.add(parts[-1])
        return tuple(sorted(tasks))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the blocks that feed heads of more than one task."""
        users: dict[str, set[str]] = {}
        for head in self.graph.heads:
            for name in self._trunk_for([head]):
                users.setdefault(name, set()).add(str(head.task))
        return [
            p
            for name in self.graph.order
            if len(users.get(name, ())) > 1
            for p in self.blocks[name].parameters()
            if p.requires_grad
        ]

    def init_weights(self) -> None:
        """Each block's own initialisation (an mmdet/mmseg block's ``init_cfg``: FCOS's prior-probability
        classifier bias, ResNet's Kaiming convs ...), then the ``init_from`` checkpoints over it.

        mmengine's ``BaseModule.init_weights`` only reaches children that have ``init_weights`` themselves, and
        the blocks sit in an ``nn.ModuleDict``, which has none: they are initialised here."""
        super().init_weights()
        for block in self.blocks.values():
            init = getattr(block, "init_weights", None)
            if callable(init) and not getattr(block, "is_init", False):
                init()
        for entry in self.init_from:
            load_block_weights(self.blocks, **entry)

    # ----------------------------------------------------------------- graph plumbing
    def _input_spec(self, node: BlockNode) -> Spec:
        specs = []
        for ref in node.inputs:
            where = f"block {node.name!r} input {ref.text!r}"
            specs.append(select(self.specs[ref.block], list(ref.path), where))
        return specs[0] if len(specs) == 1 else tuple(specs)

    def _gather(self, node: BlockNode, outs: dict[str, Any]) -> Any:
        xs = [select_value(outs[r.block], list(r.path)) for r in node.inputs]
        return xs[0] if len(xs) == 1 else tuple(xs)

    def _run(self, inputs: torch.Tensor, names: list[str]) -> dict[str, Any]:
        outs: dict[str, Any] = {IMAGE_INPUT: inputs}
        for name in names:
            outs[name] = self.adapters[name].forward(
                self.blocks[name], self._gather(self.graph.nodes[name], outs)
            )
        return outs

    def _trunk_for(self, heads: list[BlockNode]) -> list[str]:
        feeders = [r.block for h in heads for r in h.inputs if r.block != IMAGE_INPUT]
        return self.graph.ancestors(feeders)

    @property
    def tasks(self) -> list[str]:
        return self.graph.tasks

    # ----------------------------------------------------------------- modes
    def forward(self, inputs: torch.Tensor, data_samples: list | None = None, mode: str = "tensor"):
        if mode in ("loss", "predict"):
            if not data_samples:
                raise ValueError(f"mode={mode!r} needs data samples")
            return self.loss(inputs, data_samples) if mode == "loss" else self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.tensor(inputs)
        raise ValueError(f"invalid mode {mode!r}: use 'loss', 'predict' or 'tensor'")

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict[str, torch.Tensor]:
        """Run only the heads whose task is labelled in the batch, each on the samples labelled for it."""
        active = [h for h in self.graph.heads if any(h.task in labelled_tasks(s) for s in data_samples)]
        if not active:
            labelled = sorted({t for s in data_samples for t in labelled_tasks(s)})
            raise ValueError(
                f"no head predicts any task labelled in this batch ({labelled}); heads: {self.tasks}"
            )
        outs = self._run(inputs, self._trunk_for(active))
        per_task: dict[str, dict[str, torch.Tensor]] = {}
        for head in active:
            idx = [i for i, s in enumerate(data_samples) if head.task in labelled_tasks(s)]
            x = self._gather(head, outs)
            samples = data_samples
            if len(idx) < len(data_samples):
                x, samples = take_samples(x, idx), [data_samples[i] for i in idx]
            with self._loss_precision(inputs):
                if self.fp32_head_losses:
                    x = to_float(x)
                head_losses = self.adapters[head.name].loss(self.blocks[head.name], x, samples)
            task, shared_name = str(head.task), self._loss_head_name[head.name]
            bucket = per_task.setdefault(task, {})
            for k, v in head_losses.items():
                bucket[loss_key(task, k, shared_name)] = v
        weighted = self.task_weighting(per_task)
        return {k: v for named in weighted.values() for k, v in named.items()}

    def _loss_precision(self, inputs: torch.Tensor):
        device = inputs.device.type
        if self.fp32_head_losses and torch.is_autocast_enabled(device):
            return torch.autocast(device_type=device, enabled=False)
        return contextlib.nullcontext()

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        """Every head predicts for every sample (metrics later keep only the labelled ones)."""
        self._predict_heads(inputs, lambda head: data_samples)
        return data_samples

    @torch.no_grad()
    def predict_per_head(self, inputs: torch.Tensor, data_samples: list) -> dict[str, list]:
        """Run the trunk once and each head into its own fresh samples that carry only the metainfo of
        ``data_samples``: ``{head name: samples holding only that head's predictions}`` (for drawing or
        comparing heads without one head's fields hiding another's)."""
        return self._predict_heads(inputs, lambda head: [type(s)(metainfo=s.metainfo) for s in data_samples])

    def _predict_heads(self, inputs: torch.Tensor, samples_for: Callable[[str], list]) -> dict[str, list]:
        """The trunk once, then every head's ``predict`` into ``samples_for(head name)``."""
        heads = self.graph.heads
        outs = self._run(inputs, self._trunk_for(heads))
        written = {}
        for head in heads:
            samples = written[head.name] = samples_for(head.name)
            self.adapters[head.name].predict(self.blocks[head.name], self._gather(head, outs), samples)
        return written

    def tensor(self, inputs: torch.Tensor, heads: Sequence[str] | None = None) -> dict[str, Any]:
        """Raw outputs of the chosen heads (default all), keyed by head name: for export and benchmarks."""
        nodes = self.graph.heads if heads is None else [self._head(n) for n in heads]
        return self.block_outputs(inputs, [n.name for n in nodes])

    def block_outputs(self, inputs: torch.Tensor, blocks: Sequence[str]) -> dict[str, Any]:
        """Raw outputs of any blocks (trunk or heads), keyed by block name, running only what they depend on."""
        unknown = [b for b in blocks if b not in self.graph.nodes]
        if unknown:
            raise KeyError(
                f"no block named {', '.join(map(repr, unknown))}; blocks: {', '.join(self.graph.order)}"
            )
        outs = self._run(inputs, self.graph.ancestors(list(blocks)))
        return {b: outs[b] for b in blocks}

    def _head(self, name: str) -> BlockNode:
        node = self.graph.nodes.get(name)
        if node is None or not node.is_head:
            raise KeyError(f"no head named {name!r}; heads: {[h.name for h in self.graph.heads]}")
        return node
