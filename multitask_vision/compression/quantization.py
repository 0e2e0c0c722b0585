"""Int8 quantization: torchao PT2E (static PTQ and QAT, x86) on the model's blocks, and ONNX Runtime QDQ.

**PT2E on blocks, in place.** The model is not exported as one graph: every *unit* is. A unit is a trunk block
(backbone, neck: the whole block) or a direct child of a head that holds a conv/linear (its towers and
prediction convs; ``ModuleList`` / ``ModuleDict`` children are split into their items). Each unit is
``torch.export``-ed (non-strict, batch/height/width dynamic) with the input it received in one real forward
pass, prepared by torchao (``prepare_pt2e`` / ``prepare_qat_pt2e`` with ``X86InductorQuantizer``) and put back
in place of the original module. The model keeps its whole API: the heads' own ``loss`` (QAT inside mmengine's
train loop, optimizer untouched: the prepared graphs hold the very same ``Parameter`` objects) and ``predict``
(metrics with the test evaluator). ``convert_pt2e`` later turns every unit into int8 (quantize / dequantize
around int8 weights); the whole model then exports as one program (``.pt2``) or ONNX.

Why per unit: the heads compute their loss from their own ``forward`` (``head.loss(x)`` calls ``self(x)``),
so one exported graph of the whole model could serve inference but not training; and torchao's x86 quantizer
groups every call of a shared module into one partition (``Input partition has more than one output node`` on
ResNet's reused ReLU and on the detection head shared over levels), which :func:`split_shared_calls` fixes
by giving each call of a module its own partition.

**ONNX Runtime**: ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations: the fast kernels on
x86) or ``quantize_dynamic`` on the exported fp32 ONNX file.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import types
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from multitask_vision.registry import COMPRESSION

if TYPE_CHECKING:
    from multitask_vision.models.multitask_model import MultiTaskModel

PT2E_STATE = "mtv_pt2e"  # GraphModule.meta key: 'prepared' | 'prepared_qat' | 'converted'
QUANTIZABLE = (nn.Conv2d, nn.Linear)
OBSERVERS = ("minmax", "histogram")
BACKENDS = ("x86", "onnxruntime")


# ------------------------------------------------------------------------------------------ units
def quantizable_units(model: MultiTaskModel) -> list[tuple[str, nn.Module, str]]:
    """``[(qualified name, parent, attribute)]`` of the units of ``model.blocks`` (see the module docstring)."""
    graph = model.graph
    heads = {h.name for h in graph.heads}
    units: list[tuple[str, nn.Module, str]] = []

    def has_weights(m: nn.Module) -> bool:
        return any(isinstance(x, QUANTIZABLE) or PT2E_STATE in getattr(x, "meta", {}) for x in m.modules())

    def visit(prefix: str, parent: nn.Module, attr: str, mod: nn.Module) -> None:
        if PT2E_STATE in getattr(mod, "meta", {}):  # already a prepared / converted graph
            units.append((prefix, parent, attr))
            return
        if not has_weights(mod):
            return
        if isinstance(mod, (nn.ModuleList, nn.ModuleDict)):
            for key, child in mod.named_children():
                visit(f"{prefix}.{key}", mod, key, child)
        else:
            units.append((prefix, parent, attr))

    for name, block in model.blocks.items():
        if name in heads:
            for key, child in block.named_children():
                visit(f"blocks.{name}.{key}", block, key, child)
        else:
            visit(f"blocks.{name}", model.blocks, name, block)
    return units


def _get(parent: nn.Module, attr: str) -> nn.Module:
    return parent[int(attr)] if isinstance(parent, nn.ModuleList) else getattr(parent, attr)


def _set(parent: nn.Module, attr: str, value: nn.Module) -> None:
    if isinstance(parent, nn.ModuleList):
        parent[int(attr)] = value
    else:
        setattr(parent, attr, value)


def capture_unit_inputs(
    model: MultiTaskModel, units: Sequence[tuple[str, nn.Module, str]], img: Tensor
) -> dict:
    """One tensor-mode forward of ``img``: ``{unit name: (args, kwargs)}`` as each unit first received them."""
    captured: dict[str, tuple] = {}
    handles = []
    for name, parent, attr in units:

        def pre_hook(_m, args, kwargs, name=name):
            if name not in captured:
                detach = lambda t: t.detach() if isinstance(t, Tensor) else t  # noqa: E731
                captured[name] = (tree_map(detach, args), tree_map(detach, kwargs))

        handles.append(_get(parent, attr).register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model.tensor(img)
    finally:
        for h in handles:
            h.remove()
    return captured


def _dynamic(value: Any) -> Any:
    """Dynamic batch (and height/width for images) for every tensor of an input tree."""
    if isinstance(value, Tensor):
        dims = [0, 2, 3] if value.dim() == 4 else [0] if value.dim() >= 1 else []
        return {d: torch.export.Dim.DYNAMIC for d in dims}
    if isinstance(value, dict):
        return {k: _dynamic(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_dynamic(v) for v in value)
    return None


def split_shared_calls(gm: torch.fx.GraphModule) -> int:
    """Give each call of a module its own source partition for torchao's x86 quantizer.

    A non-strict export records ``nn_module_stack`` with the module's path for every call; repeated calls of
    one module (ResNet's ``relu`` twice per block, a head shared over pyramid levels) get stack keys with an
    ``@<n>`` suffix but the same path, so the quantizer's partitions merge them and it fails with ``... partition
    has more than one output node``. Appending the suffix to the path separates the calls. Returns the number
    of nodes changed.
    """
    changed = 0
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            continue
        key, (path, cls) = list(stack.items())[-1]
        if "@" in key:
            stack = dict(stack)
            stack[key] = (f"{path}@{key.rsplit('@', 1)[1]}", cls)
            node.meta["nn_module_stack"] = stack
            changed += 1
    return changed


_PATTERN_CACHE: dict[Any, torch.fx.GraphModule] = {}


@contextlib.contextmanager
def cached_pattern_graphs():
    """Trace each of torchao's conv-bn replacement patterns once per process.

    torchao 0.17 builds its QAT conv-bn patterns with ``torch.export(strict=True)`` *every time* it fuses
    (``prepare_qat_pt2e``), folds (``convert_pt2e``) or switches batch norm (``move_exported_model_to_eval``) in
    one graph: 96 small exports, ~15 s per graph, whatever the model. The patterns depend only on flags and
    on tiny fixed example inputs, so within this context ``_get_aten_graph_module_for_pattern`` returns a copy
    of the first trace of each (pattern code, closure flags, example shapes). Outside it nothing is changed;
    without that private function (another torchao) it does nothing.
    """
    from torchao.quantization.pt2e import qat_utils
    from torchao.quantization.pt2e import utils as pt2e_utils

    original = getattr(pt2e_utils, "_get_aten_graph_module_for_pattern", None)
    if original is None or getattr(qat_utils, "_get_aten_graph_module_for_pattern", None) is not original:
        yield
        return

    def sig(v: Any) -> Any:
        return (tuple(v.shape), v.dtype) if isinstance(v, Tensor) else v

    def cached(pattern, example_inputs, is_cuda=False, **kwargs):
        fn = getattr(pattern, "fn", pattern)  # torchao wraps some patterns in a module holding .fn
        try:
            cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
            key = (type(pattern).__name__, fn.__code__, cells, tuple(sig(x) for x in example_inputs), is_cuda,
                   tuple(sorted((k, sig(v)) for k, v in kwargs.items())))  # fmt: skip
            hash(key)
        except (AttributeError, TypeError, ValueError):  # not a plain closure: trace as torchao does
            return original(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _PATTERN_CACHE:
            _PATTERN_CACHE[key] = original(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_PATTERN_CACHE[key])

    pt2e_utils._get_aten_graph_module_for_pattern = cached
    qat_utils._get_aten_graph_module_for_pattern = cached
    try:
        yield
    finally:
        pt2e_utils._get_aten_graph_module_for_pattern = original
        qat_utils._get_aten_graph_module_for_pattern = original


def x86_quantizer(observer: str, qat: bool):
    """torchao's ``X86InductorQuantizer``: int8 per-channel symmetric weights, uint8 per-tensor activations.

    ``observer='histogram'``: torchao's default HistogramObserver for activations (static PTQ);
    ``'minmax'``: MinMaxObserver (static) / moving-average min-max fake-quant (QAT, torchao's default).
    """
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config(is_qat=qat)
    if observer == "minmax" and not qat:
        act = dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = X86InductorQuantizer()
    quantizer.set_global(config)
    return quantizer


def prepare_units(model: MultiTaskModel, img: Tensor, *, observer: str, qat: bool) -> list[str]:
    """Export, annotate and put back every unit (PTQ observers or QAT fake-quant). ``img``: a normalised batch
    of at least 2 images (dynamic dims need a non-1 example). Returns the names of the prepared units; units
    that the forward pass never called (e.g. a loss-only submodule) stay float."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    if img.shape[0] < 2:
        raise ValueError("PT2E preparation needs a batch of at least 2 images (dynamic batch dimension)")
    units = quantizable_units(model)
    was_training = model.training
    inputs = capture_unit_inputs(model.eval(), units, img)
    quantizer = x86_quantizer(observer, qat)
    prepared = []
    for name, parent, attr in units:
        if name not in inputs:
            continue
        args, kwargs = inputs[name]
        mod = _get(parent, attr)
        mod.train(qat)  # QAT exports batch norm in training form; PTQ in inference form
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(
                mod, args, kwargs, dynamic_shapes=_dynamic(args) if not kwargs else None, strict=False
            )
            gm = ep.module()
            split_shared_calls(gm)
            with cached_pattern_graphs():
                gm = prepare_qat_pt2e(gm, quantizer) if qat else prepare_pt2e(gm, quantizer)
        gm.meta[PT2E_STATE] = "prepared_qat" if qat else "prepared"
        _install_mode_switch(gm, training_form=qat)
        _set(parent, attr, gm)
        prepared.append(name)
    model.train(was_training)
    return prepared


def _has_mode_ops(gm: torch.fx.GraphModule) -> bool:
    """Whether the graph holds ops whose train and eval forms differ (batch norm, dropout)."""
    return any(
        n.op == "call_function" and ("batch_norm" in str(n.target) or "dropout" in str(n.target))
        for n in gm.graph.nodes
    )


def _set_form(gm: torch.fx.GraphModule, train: bool) -> None:
    """torchao's ``move_exported_model_to_train`` / ``_to_eval``, only when the form really changes and the
    graph has ops it affects: each call re-traces torchao's replacement patterns (~1 s per graph)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.export_utils import _EXPORTED_TRAINING_ATTR

    if getattr(gm, _EXPORTED_TRAINING_ATTR) == train:
        return
    if _has_mode_ops(gm):
        with cached_pattern_graphs():
            (move_exported_model_to_train if train else move_exported_model_to_eval)(gm)
    setattr(gm, _EXPORTED_TRAINING_ATTR, train)


def _install_mode_switch(gm: torch.fx.GraphModule, *, training_form: bool) -> None:
    """Let ``model.train()`` / ``.eval()`` (mmengine's loops call them every iteration) reach the graph: QAT
    graphs switch batch norm between training and inference forms when the mode changes; PTQ and converted
    graphs are inference-only and stay so (torchao's default makes both calls raise)."""
    from torchao.quantization.pt2e.export_utils import _EXPORTED_TRAINING_ATTR

    setattr(gm, _EXPORTED_TRAINING_ATTR, training_form)

    def train(self, mode: bool = True):
        self.training = mode
        if self.meta.get(PT2E_STATE) == "prepared_qat":
            _set_form(self, mode)
        return self

    gm.train = types.MethodType(train, gm)  # type: ignore[method-assign]
    gm.eval = types.MethodType(lambda self: self.train(False), gm)  # type: ignore[method-assign]


def pt2e_units(model: MultiTaskModel) -> list[tuple[str, nn.Module, str]]:
    return [u for u in quantizable_units(model) if PT2E_STATE in getattr(_get(u[1], u[2]), "meta", {})]


def convert_units(model: MultiTaskModel) -> list[str]:
    """``convert_pt2e`` every prepared unit (int8 weights, quantize/dequantize of activations), in eval form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    done = []
    for name, parent, attr in pt2e_units(model):
        gm = cast(torch.fx.GraphModule, _get(parent, attr))
        if gm.meta[PT2E_STATE] == "converted":
            continue
        _set_form(gm, False)
        with warnings.catch_warnings(), cached_pattern_graphs():
            warnings.simplefilter("ignore")
            out = convert_pt2e(gm)
        drop_unused_tensors(out)
        out.meta[PT2E_STATE] = "converted"
        _install_mode_switch(out, training_form=False)  # converted from the inference form
        _set(parent, attr, out)
        done.append(name)
    model.eval()
    return done


def drop_unused_tensors(gm: torch.fx.GraphModule) -> int:
    """Delete parameters / buffers no node reads. ``convert_pt2e`` folds each float weight into an int8
    constant but leaves the float ``Parameter`` registered: it would double the saved file. Returns the count."""
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]
    dropped = 0
    for name in names:
        if name in used:
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        owner._parameters.pop(leaf, None)
        owner._buffers.pop(leaf, None)
        dropped += 1
    gm.delete_all_unused_submodules()
    return dropped


def calibrate(model: MultiTaskModel, batches: Iterable[Tensor], progress: Any = None) -> int:
    """Run prepared (observing) units over normalised batches in tensor mode; returns the number of images."""
    n = 0
    with torch.no_grad():
        for img in progress(batches) if progress else batches:
            model.tensor(img)
            n += img.shape[0]
    return n


# ------------------------------------------------------------------------------------------ ONNX Runtime
class _Reader:
    """ONNX Runtime calibration data reader over normalised batches."""

    def __init__(self, batches: Sequence[Tensor], input_name: str) -> None:
        # one image per call: works for static batch-1 graphs too, and the ranges are the same
        images = [img[None].numpy().astype(np.float32) for b in batches for img in b]
        self._it = iter([{input_name: x} for x in images])

    def get_next(self):
        return next(self._it, None)


def ort_quantize_static(src: Path, dst: Path, batches: Sequence[Tensor], observer: str) -> Path:
    """QDQ, per-channel int8 weights, **uint8 activations** (QUInt8: the fast x86 kernels; int8 activations were
    slower, see stack.md), calibrated by min-max or by the 99.999th percentile of a histogram."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Reader, CalibrationDataReader):
        pass

    method = CalibrationMethod.MinMax if observer == "minmax" else CalibrationMethod.Percentile
    _quiet_ort_logging()
    quantize_static(
        str(src),
        str(dst),
        Reader(batches, "input"),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
    )
    return dst


def ort_quantize_dynamic(src: Path, dst: Path) -> Path:
    """Weights int8 (per channel), activations quantized at run time (``ConvInteger`` / ``MatMulInteger``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet_ort_logging()
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QUInt8)
    return dst


def _quiet_ort_logging() -> None:
    import logging

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))


# ------------------------------------------------------------------------------------------ registered steps
def _backends(backend: str | Sequence[str]) -> list[str]:
    names = [backend] if isinstance(backend, str) else list(backend)
    bad = [b for b in names if b not in BACKENDS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"quantization.backend must be one of {BACKENDS} or a list of them, got {backend!r}")
    return names


class QuantizationStep:
    """Base of the quantization steps. ``backends``: ``x86`` (torchao PT2E on the PyTorch model) and/or
    ``onnxruntime`` (int8 ONNX from the exported fp32 ONNX file)."""

    method = ""

    def __init__(self, *, backend: str | Sequence[str] = "x86") -> None:
        self.backends = _backends(backend)

    @property
    def torch_side(self) -> bool:
        return "x86" in self.backends

    @property
    def onnx_side(self) -> bool:
        return "onnxruntime" in self.backends


def _observer(observer: str) -> str:
    if observer not in OBSERVERS:
        raise ValueError(f"quantization.observer must be one of {OBSERVERS}, got {observer!r}")
    return observer


@COMPRESSION.register_module()
class StaticQuantization(QuantizationStep):
    """Post-training static int8, calibrated on real training batches from every source.

    Args:
        observer: ``'minmax'`` or ``'histogram'`` (activation ranges; weights are per-channel min-max).
        backend: ``'x86'``, ``'onnxruntime'`` or both (``['x86', 'onnxruntime']``).
        calib_samples: calibration images, split evenly over the training sources.
    """

    method = "static"

    def __init__(
        self, *, observer: str = "minmax", backend: str | Sequence[str] = "x86", calib_samples: int = 64
    ) -> None:
        super().__init__(backend=backend)
        self.observer = _observer(observer)
        if isinstance(calib_samples, bool) or not isinstance(calib_samples, int) or calib_samples < 2:
            raise ValueError(f"quantization.calib_samples must be an int >= 2, got {calib_samples!r}")
        self.calib_samples = calib_samples

    def quantize_torch(self, model: MultiTaskModel, batches: Sequence[Tensor], progress: Any = None) -> dict:
        prepared = prepare_units(model, batches[0], observer=self.observer, qat=False)
        n = calibrate(model, batches, progress)
        convert_units(model)
        return dict(units=len(prepared), calibration_images=n)

    def quantize_onnx(self, src: Path, dst: Path, batches: Sequence[Tensor]) -> Path:
        return ort_quantize_static(src, dst, batches, self.observer)


@COMPRESSION.register_module()
class DynamicQuantization(QuantizationStep):
    """Dynamic int8 (weights int8, activation ranges computed at run time): ONNX Runtime only, because torchao's
    x86 dynamic config quantizes ``nn.Linear`` alone and these models compute in convolutions."""

    method = "dynamic"

    def __init__(self, *, backend: str | Sequence[str] = "onnxruntime") -> None:
        super().__init__(backend=backend)
        if self.backends != ["onnxruntime"]:
            raise ValueError(
                "quantization.backend must be 'onnxruntime' for method='dynamic' (torchao's x86 dynamic "
                "quantization covers nn.Linear only)"
            )

    def quantize_onnx(self, src: Path, dst: Path, batches: Sequence[Tensor]) -> Path:
        return ort_quantize_dynamic(src, dst)


@COMPRESSION.register_module()
class QATQuantization(QuantizationStep):
    """Quantization-aware training through PT2E: the fine-tuning run (``finetune=dict(iters=N)``) trains with
    fake-quant (:class:`multitask_vision.engine.qat_hook.QATHook`) and converts to int8 at the end.

    Args:
        observer: only ``'minmax'`` (moving-average min/max fake quantization, torchao's QAT default).
        backend: ``'x86'`` (PT2E).
    """

    method = "qat"

    def __init__(self, *, observer: str = "minmax", backend: str | Sequence[str] = "x86") -> None:
        super().__init__(backend=backend)
        if _observer(observer) != "minmax":
            raise ValueError(
                "quantization.observer must be 'minmax' for method='qat' (moving-average fake quant)"
            )
        if self.backends != ["x86"]:
            raise ValueError("quantization.backend must be 'x86' for method='qat' (torchao PT2E QAT)")
        self.observer = observer
