"""torchao PT2E (x86 int8) on a model's blocks, in place: static PTQ (observers + calibration) and QAT.

The model is not exported as one graph: every *unit* is. A unit is a trunk block (backbone, neck: the whole
block) or a direct child of a head that holds a conv/linear (its towers and prediction convs; ``ModuleList`` /
``ModuleDict`` children are split into their items). Each unit is ``torch.export``-ed (non-strict,
batch/height/width dynamic) with the input it received in one real forward pass, prepared by torchao
(``prepare_pt2e`` / ``prepare_qat_pt2e`` with ``X86InductorQuantizer``) and put back in place of the original
module. The model keeps its whole API: the heads' own ``loss`` (QAT inside mmengine's train loop, optimizer
untouched: the prepared graphs hold the very same ``Parameter`` objects) and ``predict`` (metrics with the test
evaluator). ``convert_pt2e`` later turns every unit into int8 (quantize / dequantize around int8 weights); the
whole model then exports as one program (``.pt2``) or ONNX.

Why per unit: the heads compute their loss from their own ``forward`` (``head.loss(x)`` calls ``self(x)``),
so one exported graph of the whole model could serve inference but not training; and torchao's x86 quantizer
groups every call of a shared module into one partition (``Input partition has more than one output node`` on
ResNet's reused ReLU and on the detection head shared over levels), which :func:`split_shared_calls` fixes
by giving each call of a module its own partition.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import types
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

if TYPE_CHECKING:
    from multitask_vision.models.multitask_model import MultiTaskModel

PT2E_STATE = "mtv_pt2e"  # GraphModule.meta key: 'prepared' | 'prepared_qat' | 'converted'
QUANTIZABLE = (nn.Conv2d, nn.Linear)
# activation observers of static PTQ (QAT always uses torchao's moving-average min-max fake quantization)
OBSERVERS = ("minmax", "histogram")


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


def x86_quantizer(*, qat: bool, observer: str | None = None):
    """torchao's ``X86InductorQuantizer``: int8 per-channel symmetric weights, uint8 per-tensor activations.

    QAT: torchao's moving-average min-max fake quantization (no ``observer``). Static PTQ: ``observer='minmax'``
    (MinMaxObserver) or ``'histogram'`` (torchao's default HistogramObserver) for the activations.
    """
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    if qat != (observer is None) or (observer is not None and observer not in OBSERVERS):
        raise ValueError(
            f"PT2E: QAT takes no observer, static PTQ one of {OBSERVERS}; got qat={qat}, observer={observer!r}"
        )
    config = get_default_x86_inductor_quantization_config(is_qat=qat)
    if observer == "minmax":
        act = dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = X86InductorQuantizer()
    quantizer.set_global(config)
    return quantizer


def prepare_units(model: MultiTaskModel, img: Tensor, *, qat: bool, observer: str | None = None) -> list[str]:
    """Export, annotate and put back every unit: PTQ observers (``observer``, see :func:`x86_quantizer`) or QAT
    fake quantization. ``img``: a normalised batch of at least 2 images (dynamic dims need a non-1 example).
    Returns the names of the prepared units; units that the forward pass never called (e.g. a loss-only
    submodule) stay float."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    if img.shape[0] < 2:
        raise ValueError("PT2E preparation needs a batch of at least 2 images (dynamic batch dimension)")
    quantizer = x86_quantizer(qat=qat, observer=observer)
    units = quantizable_units(model)
    was_training = model.training
    inputs = capture_unit_inputs(model.eval(), units, img)
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
