"""Pruning steps, and saving / reloading a pruned model.

* ``unstructured``: global L1 magnitude over every conv/linear weight of the target blocks
  (``torch.nn.utils.prune.global_unstructured`` + ``L1Unstructured``), made permanent (``prune.remove``).
  Zeroes weights: parameters, MACs and latency stay the same on dense kernels.
* ``structured``: per layer, the ``amount`` output channels of smallest Ln norm are masked
  (``prune.ln_structured(dim=0)``), made permanent. Also zeroes only; the shapes stay.
* ``physical``: Torch-Pruning's DepGraph removes channels for real, consistently across the shared trunk, the
  necks and every head (residual adds, FPN laterals, GroupNorm groups), so parameters, MACs and latency drop.

Every head's *prediction layers* (a conv/linear inside a head whose output has the shape of one of the head's
outputs: class, box, centerness, segmentation logits, depth) are never pruned, so the outputs keep their meaning.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from multitask_vision.models.builder import build_model
from multitask_vision.registry import COMPRESSION
from multitask_vision.utils.checkpoint import PRUNED_FORMAT, load_checkpoint_file, structural_shapes

if TYPE_CHECKING:
    from multitask_vision.models.multitask_model import MultiTaskModel

PRUNABLE = (nn.Conv2d, nn.Linear)


def prediction_layers(model: MultiTaskModel, example: Tensor) -> dict[str, nn.Module]:
    """``{qualified name: module}`` of every head's prediction layers (see the module docstring).

    Found by one forward pass: a conv/linear inside a head whose output shape equals the shape of one of the
    head's raw outputs at that call. Conservative: a tower conv that happens to have an output's shape is
    protected too (never pruned), never the other way round.
    """
    from multitask_vision.compression.export import flatten_outputs

    heads = [h.name for h in model.graph.heads]
    seen: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for head in heads:
        for sub, mod in model.blocks[head].named_modules():
            if isinstance(mod, PRUNABLE):
                name = f"blocks.{head}.{sub}"

                def hook(_m, _i, out, name=name):
                    seen.setdefault(name, []).append(tuple(out.shape))

                handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            outs = model.tensor(example)
    finally:
        for h in handles:
            h.remove()
    out_shapes = {h: {tuple(t.shape) for _, t in flatten_outputs(h, outs[h])} for h in heads}
    modules = dict(model.named_modules())
    found = {}
    for name, shapes in seen.items():
        head = name.split(".")[1]
        if any(s in out_shapes[head] for s in shapes):
            found[name] = modules[name]
    missing = [h for h in heads if not any(n.split(".")[1] == h for n in found)]
    if missing:
        raise ValueError(
            f"pruning: could not find the prediction layer of head(s) {missing} (no conv/linear output has the "
            "shape of a head output); add them to pruning.targets exclusions or use targets=[...] without them"
        )
    return found


def attention_layers(model: MultiTaskModel) -> dict[str, nn.Module]:
    """``{qualified name: module}`` of the conv/linear layers inside attention modules (any module with a
    ``num_heads``: timm's ``Attention`` of ViT-style blocks, ...). Their forward reshapes the projections by
    ``num_heads`` x ``head_dim``, attributes Torch-Pruning does not update: removing channels there breaks the
    model (``shape '[2, 17, 3, 2, 32]' is invalid``), so a physical pruning leaves them whole, and with them
    the residual stream they read and write (Torch-Pruning leaves a group with an ignored layer whole); the
    MLPs between them still shrink."""
    found: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        if isinstance(getattr(mod, "num_heads", None), int):
            for sub, layer in mod.named_modules():
                if isinstance(layer, PRUNABLE):
                    found[f"{name}.{sub}"] = layer
    return found


def count_params(model: MultiTaskModel) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_sparsity(model: MultiTaskModel) -> float:
    """Fraction of exactly-zero conv/linear weights."""
    total = zeros = 0
    for mod in model.modules():
        if isinstance(mod, PRUNABLE):
            total += mod.weight.numel()
            zeros += int((mod.weight == 0).sum())
    return zeros / max(total, 1)


class PruningStep:
    """Base of the pruning steps: ``apply(model, example)`` prunes ``model`` in place and returns a summary.

    Args:
        amount: fraction in (0, 1): of the weights (unstructured), of each layer's output channels (structured),
            or Torch-Pruning's ``pruning_ratio`` of channels (physical).
        targets: ``'all'`` or a list of block names whose layers are pruned (others stay intact; a physical
            pruning still adapts their *input* channels to a pruned producer).
    """

    method = ""

    def __init__(self, *, amount: float, targets: str | Sequence[str] = "all") -> None:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1:
            raise ValueError(f"pruning.amount must be a fraction in (0, 1), got {amount!r}")
        if targets != "all" and (
            isinstance(targets, str) or not targets or not all(isinstance(t, str) for t in targets)
        ):
            raise ValueError(
                f"pruning.targets must be 'all' or a non-empty list of block names, got {targets!r}"
            )
        self.amount = float(amount)
        self.targets = None if targets == "all" else list(targets)

    def check_model(self, model: MultiTaskModel) -> None:
        blocks = list(model.blocks)
        for name in self.targets or []:
            if name not in blocks:
                raise ValueError(f"pruning.targets: unknown block {name!r} (blocks: {', '.join(blocks)})")

    def target_layers(self, model: MultiTaskModel, protected: dict[str, nn.Module]) -> dict[str, nn.Module]:
        keep = set(self.targets or model.blocks)
        return {
            name: mod
            for name, mod in model.named_modules()
            if isinstance(mod, PRUNABLE) and name.split(".")[:2][-1] in keep and name not in protected
        }

    def apply(self, model: MultiTaskModel, example: Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def summary(self, model: MultiTaskModel, layers: dict, protected: dict) -> dict[str, Any]:
        return dict(
            method=self.method,
            amount=self.amount,
            targets=self.targets or "all",
            pruned_layers=len(layers),
            protected_layers=sorted(protected),
            weight_sparsity=round(weight_sparsity(model), 4),
        )


@COMPRESSION.register_module()
class UnstructuredPruning(PruningStep):
    """Global L1: the ``amount`` smallest-magnitude weights over all target layers are zeroed, permanently."""

    method = "unstructured"

    def apply(self, model: MultiTaskModel, example: Tensor) -> dict[str, Any]:
        protected = prediction_layers(model, example)
        layers = self.target_layers(model, protected)
        params = [(mod, "weight") for mod in layers.values()]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=self.amount)
        for mod, name in params:
            prune.remove(mod, name)  # permanent: plain weights again, the zeros stay
        return self.summary(model, layers, protected)


@COMPRESSION.register_module()
class StructuredPruning(PruningStep):
    """Per layer, ``prune.ln_structured(dim=0, n=norm)``: whole output channels zeroed, permanently."""

    method = "structured"

    def __init__(self, *, amount: float, targets: str | Sequence[str] = "all", norm: int = 2) -> None:
        super().__init__(amount=amount, targets=targets)
        if norm not in (1, 2):
            raise ValueError(f"pruning.norm must be 1 or 2, got {norm!r}")
        self.norm = norm

    def apply(self, model: MultiTaskModel, example: Tensor) -> dict[str, Any]:
        protected = prediction_layers(model, example)
        layers = self.target_layers(model, protected)
        for mod in layers.values():
            prune.ln_structured(mod, "weight", amount=self.amount, n=self.norm, dim=0)
            prune.remove(mod, "weight")
        return dict(self.summary(model, layers, protected), norm=self.norm)


@COMPRESSION.register_module()
class PhysicalPruning(PruningStep):
    """Torch-Pruning ``MetaPruner`` with ``GroupMagnitudeImportance(p=norm)`` and ``round_to``: channels are
    removed across the dependency graph (trunk, necks, heads), so the model really shrinks.

    Args:
        round_to: channel counts are multiples of this (8: SIMD-friendly, else latency barely drops).
        norm: p of the group magnitude importance.
        global_pruning: rank channels over the whole network instead of per layer.
    """

    method = "physical"

    def __init__(
        self,
        *,
        amount: float,
        targets: str | Sequence[str] = "all",
        round_to: int = 8,
        norm: int = 2,
        global_pruning: bool = False,
    ) -> None:
        super().__init__(amount=amount, targets=targets)
        if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
            raise ValueError(f"pruning.round_to must be a positive int, got {round_to!r}")
        if norm not in (1, 2):
            raise ValueError(f"pruning.norm must be 1 or 2, got {norm!r}")
        if not isinstance(global_pruning, bool):
            raise ValueError(f"pruning.global_pruning must be True or False, got {global_pruning!r}")
        self.round_to = round_to
        self.norm = norm
        self.global_pruning = global_pruning

    def apply(self, model: MultiTaskModel, example: Tensor) -> dict[str, Any]:
        import torch_pruning as tp

        from multitask_vision.compression.export import ExportWrapper

        protected = prediction_layers(model, example) | attention_layers(model)
        layers = self.target_layers(model, protected)
        ignored = [m for m in model.modules() if isinstance(m, PRUNABLE) and m not in layers.values()]
        wrapper = ExportWrapper(model, example)  # all heads: every consumer of the trunk is in the graph
        with torch.no_grad():
            before = [tuple(t.shape) for t in wrapper(example)]
        with warnings.catch_warnings():
            # a parameter used outside a layer (the detection head's per-level scales) makes Torch-Pruning warn
            # that it may prune it; the output shapes are checked below instead
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            pruner = tp.pruner.MetaPruner(
                wrapper,
                example,
                importance=tp.importance.GroupMagnitudeImportance(p=self.norm),
                pruning_ratio=self.amount,
                ignored_layers=ignored,
                round_to=self.round_to,
                global_pruning=self.global_pruning,
            )
            pruner.step()
        with torch.no_grad():
            after = [tuple(t.shape) for t in wrapper(example)]
        if before != after:  # a prediction layer changed: the outputs would lose their meaning
            raise RuntimeError(f"physical pruning changed output shapes {before} -> {after}")
        for mod in model.modules():
            if isinstance(mod, nn.GroupNorm) and mod.num_channels % mod.num_groups:
                raise RuntimeError(
                    f"physical pruning left GroupNorm with {mod.num_channels} channels in {mod.num_groups} groups"
                )
        return dict(self.summary(model, layers, protected), round_to=self.round_to, norm=self.norm)


# ------------------------------------------------------------------------------------------ save / reload
def save_pruned(model: MultiTaskModel, path: str | Path, model_cfg: dict, meta: dict | None = None) -> Path:
    """Save a (physically) pruned model: its state dict, the model config it was built from and every layer's
    new shape. Only tensors and plain Python values: :func:`load_pruned` reads it with weights-only loading."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = dict(
        format=PRUNED_FORMAT,
        model_cfg=_plain(model_cfg),
        shapes=structural_shapes(model),
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        meta=_plain(meta or {}),
    )
    torch.save(blob, path)
    return path


def _plain(value: Any) -> Any:
    """ConfigDicts and tuples to plain dicts / lists (weights-only loadable)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def load_pruned(path: str | Path, model_cfg: dict | None = None) -> MultiTaskModel:
    """Rebuild a model saved by :func:`save_pruned`: build it from its config (or ``model_cfg``), shrink every
    recorded layer to its saved shape, load the weights (strict). Weights-only loading stays on."""
    path = Path(path)
    blob = load_checkpoint_file(path)
    if not isinstance(blob, dict) or blob.get("format") != PRUNED_FORMAT:
        raise ValueError(f"{path} is not a pruned model saved by multitask_vision (format {PRUNED_FORMAT})")
    return build_model(dict(model=copy.deepcopy(model_cfg or blob["model_cfg"])), path)
