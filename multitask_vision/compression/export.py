"""Export: a flat-output wrapper of the model, ONNX (dynamo exporter) and TorchScript, ORT sessions and parity.

The exported graph takes a **normalised** image batch ``(B, 3, H, W)`` float32, exactly what the model's data
preprocessor produces (BGR -> RGB, ``(x - mean) / std``, padded bottom/right to ``pad_size_divisor``): that step
stays outside the graph so the same file serves any input size and the runtime can fuse it with decoding
(:func:`multitask_vision.compression.postprocess.preprocess` does it with numpy; its constants are in the
manifest written beside the model). Outputs are a flat tuple of tensors with stable names ``<block>.<output>``,
as each head (or its adapter, for mmdet/mmseg heads) declares them (``output_names``): ``det_head.cls_0`` ..
``det_head.ctr_2`` (per level), ``seg_head.logits``, ``depth_head.depth``, ``backbone.layer3`` ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from multitask_vision.registry import COMPRESSION

if TYPE_CHECKING:
    from multitask_vision.models.multitask_model import MultiTaskModel


def flatten_outputs(
    prefix: str, value: Any, labels: tuple[str, ...] | str | None = None
) -> list[tuple[str, Tensor]]:
    """``[(name, tensor)]`` of a block's output in a fixed order (dict keys, tuple indices, per-level lists);
    ``labels``: the block's declared ``output_names`` (see ``TaskHead.output_names``), or None."""
    if isinstance(value, Tensor):
        return [(f"{prefix}.{labels if isinstance(labels, str) else 'out'}", value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in flatten_outputs(f"{prefix}.{k}", v)]
    if isinstance(value, (list, tuple)):
        out: list[tuple[str, Tensor]] = []
        tags = labels if isinstance(labels, tuple) and len(labels) == len(value) else None
        for j, part in enumerate(value):
            tag = tags[j] if tags else f"out{j}"
            if isinstance(part, Tensor):
                out.append((f"{prefix}.{tag}" if tags else f"{prefix}.{j}", part))
            elif isinstance(part, (list, tuple)) and all(isinstance(t, Tensor) for t in part):
                out += [(f"{prefix}.{tag}_{i}", t) for i, t in enumerate(part)]
            else:
                out += flatten_outputs(f"{prefix}.{tag}", part)
        return out
    raise TypeError(f"{prefix}: cannot export an output of type {type(value).__name__}")


class ExportWrapper(nn.Module):
    """``forward(img (B, 3, H, W) normalised) -> tuple`` of the chosen heads' raw outputs (tensor mode), or of
    the chosen blocks' outputs, flattened; :attr:`output_names` names them (``<block>.<output>``).

    Args:
        model: a ``MultiTaskModel`` (pruned or not; blocks may be PT2E graph modules).
        heads: head names to export (default: every head); exclusive with ``blocks``.
        blocks: block names to export instead (e.g. ``['backbone']``): their outputs, running only what they need.
        example: a normalised batch used once to record the output names.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        example: Tensor,
        heads: Sequence[str] | None = None,
        blocks: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if heads is not None and blocks is not None:
            raise ValueError("export: give heads= or blocks=, not both")
        self.model = model
        graph = model.graph
        self.blocks = list(blocks) if blocks is not None else None
        self.heads = list(heads) if heads is not None else [h.name for h in graph.heads]
        self.exported = self.blocks if self.blocks is not None else self.heads
        for name in self.exported:
            if name not in graph.nodes:
                raise ValueError(f"export: no block named {name!r} (blocks: {', '.join(graph.order)})")
        self._labels = {n: model.adapters[n].output_names(model.blocks[n]) for n in self.exported}
        with torch.no_grad():
            outs = self._outputs(example)
        # each block's output names and nesting, to rebuild its raw output from a runtime's flat outputs
        self._structure: dict[str, tuple[list[str], TreeSpec]] = {}
        for n in self.exported:
            named = flatten_outputs(n, outs[n], self._labels[n])
            leaves, spec = tree_flatten(outs[n])
            if len(leaves) != len(named) or any(a is not b for a, (_, b) in zip(leaves, named)):
                raise RuntimeError(f"export: {n}'s flattened outputs are not in pytree order")
            self._structure[n] = ([name for name, _ in named], spec)
        self.output_names = [name for n in self.exported for name in self._structure[n][0]]
        if len(set(self.output_names)) != len(self.output_names):
            raise ValueError(f"export: output names collide: {self.output_names}")

    def _outputs(self, img: Tensor) -> dict[str, Any]:
        model: Any = self.model
        if self.blocks is None:
            return model.tensor(img, heads=self.heads)
        # a block-level export runs only the blocks the chosen ones depend on
        return model.block_outputs(img, self.blocks)

    def _named(self, img: Tensor) -> list[tuple[str, Tensor]]:
        outs = self._outputs(img)
        return [item for n in self.exported for item in flatten_outputs(n, outs[n], self._labels[n])]

    def raw_outputs(self, block: str, flat: dict[str, Tensor]) -> Any:
        """``block``'s raw output, nested as the block returns it, rebuilt from flat named outputs (an ONNX
        Runtime session's): what a head's ``predict_by_feat`` takes."""
        names, spec = self._structure[block]
        return tree_unflatten([flat[n] for n in names], spec)

    def forward(self, img: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for _, t in self._named(img))


def batch_dynamic_shapes(dynamic_batch: bool) -> tuple | None:
    return ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None


def export_onnx(
    wrapper: ExportWrapper, example: Tensor, path: str | Path, *, opset: int, dynamic_batch: bool
) -> Path:
    """Dynamo exporter, one self-contained file (``external_data=False``), named input ``input`` and outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch.export first (non-strict, what the dynamo exporter does itself): the exporter then also takes
        # models with PT2E int8 graphs inside, which it fails to re-trace directly
        ep = torch.export.export(
            wrapper, (example,), dynamic_shapes=batch_dynamic_shapes(dynamic_batch), strict=False
        )
        torch.onnx.export(
            ep,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=list(wrapper.output_names),
            opset_version=opset,
            verbose=False,
        )
    return path


def export_torchscript(wrapper: ExportWrapper, example: Tensor, path: str | Path) -> Path:
    """``torch.jit.trace`` (deprecated upstream but still the TorchScript route; batch size stays free for
    convolutional graphs, parity is checked at another batch size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    torch.jit.save(traced, str(path))
    return path


def export_program(
    wrapper: ExportWrapper, example: Tensor, path: str | Path, *, dynamic_batch: bool = True
) -> Path:
    """``torch.export`` the wrapper (e.g. with PT2E int8 blocks inside) and save the ``ExportedProgram`` (.pt2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(
            wrapper, (example,), dynamic_shapes=batch_dynamic_shapes(dynamic_batch), strict=False
        )
    torch.export.save(ep, str(path))
    return path


def ort_session(path: str | Path | bytes, threads: int, providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An ONNX Runtime session of a file (or a serialised model): ``threads`` intra-op threads (0: ONNX
    Runtime's default), all graph optimisations, warnings silenced, the given execution providers."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, opts, providers=list(providers))


def sub_model(path: str | Path, outputs: Sequence[str]) -> bytes:
    """The part of an ONNX file that computes ``outputs`` from its inputs (``onnx.utils.Extractor``),
    serialised for :func:`ort_session`: ONNX Runtime runs every node of a graph whatever outputs are fetched."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    inputs = [i.name for i in model.graph.input]
    return Extractor(model).extract_model(inputs, list(outputs)).SerializeToString()


def ort_runner(path: str | Path, threads: int, outputs: Sequence[str] | None = None, *, session: Any = None):
    """``fn(img Tensor) -> {name: Tensor}`` running an ONNX file in ONNX Runtime (or an open ``session``):
    every output, or only ``outputs`` (ONNX Runtime still runs the whole graph: to run less, give a session of
    the sub-model that computes them, :func:`sub_model`)."""
    session = session if session is not None else ort_session(path, threads)
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    first = session.get_inputs()[0]
    fixed = first.shape[0] if isinstance(first.shape[0], int) else None  # a static batch size, or None

    def run(img: Tensor) -> dict[str, Tensor]:
        x = img.detach().cpu().numpy().astype(np.float32)
        if fixed is None or x.shape[0] == fixed:
            outs = session.run(names, {first.name: x})
            return {n: torch.from_numpy(np.asarray(o)) for n, o in zip(names, outs)}
        # a static-batch file: run chunks of its batch size (the last one padded by repetition)
        parts = []
        for i in range(0, x.shape[0], fixed):
            chunk = x[i : i + fixed]
            n = chunk.shape[0]
            if n < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, 0)])
            parts.append([np.asarray(o)[:n] for o in session.run(names, {first.name: chunk})])
        return {k: torch.from_numpy(np.concatenate([p[j] for p in parts])) for j, k in enumerate(names)}

    return run


def torch_runner(module: nn.Module, names: Sequence[str]):
    """``fn(img) -> {name: Tensor}`` for a module returning a flat tuple (wrapper, TorchScript, PT2E program)."""

    def run(img: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            outs = module(img)
        return dict(zip(names, outs))

    return run


def max_abs_diff(ref: dict[str, Tensor], other: dict[str, Tensor]) -> dict[str, float]:
    """Per output name: ``max |ref - other|`` (``inf`` on a shape mismatch or a missing output)."""
    out = {}
    for name, r in ref.items():
        o = other.get(name)
        if o is None or tuple(o.shape) != tuple(r.shape):
            out[name] = float("inf")
        else:
            out[name] = float((r.float() - o.float()).abs().max()) if r.numel() else 0.0
    return out


# ------------------------------------------------------------------------------------------ registered steps
class ExportStep:
    """Base of the export steps: which part of the model, and checks against a built model."""

    format: str = ""
    suffix: str = ""

    def __init__(self, *, heads: str | Sequence[str] = "all", blocks: Sequence[str] | None = None) -> None:
        if blocks is not None:
            if heads != "all":
                raise ValueError("export: give heads= or blocks=, not both")
            if isinstance(blocks, str) or not blocks or not all(isinstance(b, str) for b in blocks):
                raise ValueError(f"export.blocks must be a non-empty list of block names, got {blocks!r}")
        if heads != "all" and (
            isinstance(heads, str) or not heads or not all(isinstance(h, str) for h in heads)
        ):
            raise ValueError(f"export.heads must be 'all' or a non-empty list of head names, got {heads!r}")
        self.heads = None if heads == "all" else list(heads)
        self.blocks = list(blocks) if blocks is not None else None

    def check_model(self, model: MultiTaskModel) -> None:
        graph = model.graph
        head_names = [h.name for h in graph.heads]
        for name in self.heads or []:
            if name not in head_names:
                raise ValueError(f"export.heads: unknown head {name!r} (heads: {', '.join(head_names)})")
        for name in self.blocks or []:
            if name not in graph.nodes:
                raise ValueError(f"export.blocks: unknown block {name!r} (blocks: {', '.join(graph.order)})")

    def wrap(self, model: MultiTaskModel, example: Tensor) -> ExportWrapper:
        return ExportWrapper(model, example, heads=self.heads, blocks=self.blocks)

    def export(self, wrapper: ExportWrapper, example: Tensor, path: Path) -> Path:
        raise NotImplementedError

    def runner(self, path: Path, wrapper: ExportWrapper, threads: int):
        raise NotImplementedError


@COMPRESSION.register_module()
class OnnxExport(ExportStep):
    """``export=dict(format='onnx', heads='all' | [...], blocks=[...], opset=18, dynamic_batch=True)``."""

    format = "onnx"
    suffix = ".onnx"

    def __init__(
        self,
        *,
        heads: str | Sequence[str] = "all",
        blocks: Sequence[str] | None = None,
        opset: int = 18,
        dynamic_batch: bool = True,
    ) -> None:
        super().__init__(heads=heads, blocks=blocks)
        if not isinstance(opset, int) or not 17 <= opset <= 23:
            raise ValueError(f"export.opset must be an int in [17, 23] (dynamo exporter), got {opset!r}")
        if not isinstance(dynamic_batch, bool):
            raise ValueError(f"export.dynamic_batch must be True or False, got {dynamic_batch!r}")
        self.opset = opset
        self.dynamic_batch = dynamic_batch

    def export(self, wrapper: ExportWrapper, example: Tensor, path: Path) -> Path:
        # a static graph is exported for batch 1, the usual embedded case
        ex = example if self.dynamic_batch else example[:1]
        return export_onnx(wrapper, ex, path, opset=self.opset, dynamic_batch=self.dynamic_batch)

    def runner(self, path: Path, wrapper: ExportWrapper, threads: int):
        return ort_runner(path, threads)


@COMPRESSION.register_module()
class TorchScriptExport(ExportStep):
    """``export=dict(format='torchscript', heads=... | blocks=...)``: ``torch.jit.trace`` of the wrapper."""

    format = "torchscript"
    suffix = ".ts"

    def export(self, wrapper: ExportWrapper, example: Tensor, path: Path) -> Path:
        return export_torchscript(wrapper, example, path)

    def runner(self, path: Path, wrapper: ExportWrapper, threads: int):
        torch.set_num_threads(threads)
        return torch_runner(torch.jit.load(str(path)), wrapper.output_names)
