"""Adapter for timm models (``type='timm.<model name>'``): backbones from timm's own model registry.

A block ``dict(name='backbone', type='timm.convnext_atto', inputs='img', out_indices=(1, 2, 3), ...)`` is
``timm.create_model('convnext_atto', features_only=True, out_indices=(1, 2, 3), ...)``: the block *is*
timm's features model, and every other key of the block is a keyword of ``timm.create_model``
(``pretrained``, ``pretrained_cfg_overlay=dict(file=...)`` for a local file of timm's weights,
``drop_path_rate``, ``in_chans``, ``output_stride`` ...). timm loads its published (classification) weights
into the features model itself; the features model's own state dict may name modules differently
(ConvNeXt's ``stages.0`` is ``stages_0`` there), so weights come in through ``pretrained``, not ``init_from``.

Outputs: timm's feature model returns a list; the adapter names it ``{'stage<i>': tensor}`` where ``i`` is the
timm feature index, the number ``out_indices`` counts in (negative indices are counted from the end), so
``out_indices=(2, 3, 4)`` gives ``stage2, stage3, stage4`` and ``backbone.stage3`` picks one, whatever else is
selected. Channels and strides come from timm's own ``feature_info`` (``channels()``, ``reduction()``),
not from a dry run.

Bad input is refused at build, before training: an ``out_indices`` beyond the model's feature stages (the
error lists them), ``pretrained_cfg_overlay`` without ``pretrained=True`` (timm would ignore it), a weights
file that does not exist, and ``pretrained=True`` whose download fails (no internet): the error says to pass a
local file. Set ``HF_HUB_OFFLINE=1`` on a machine without internet so that a download fails at once instead
of after the hub client's retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from multitask_vision.models.adapters.base import BlockAdapter
from multitask_vision.models.block_types import TIMM_SCOPE, TimmModel
from multitask_vision.models.spec import FeatureSpec, Spec, describe
from multitask_vision.registry import ADAPTERS

# what timm raises when weights cannot be downloaded (no internet) or do not load into the model
_LOAD_ERRORS = (OSError, RuntimeError, KeyError)


@ADAPTERS.register_module()
class TimmAdapter(BlockAdapter):
    """Builds ``timm.create_model(name, features_only=True, **kwargs)`` and names its outputs by stage.

    One adapter instance serves one block (the model builds one per block): it keeps the output names it
    found at build time, so that :meth:`forward` still names the outputs once the module has been replaced by
    an exported graph (PT2E quantization), which has no ``feature_info``.
    """

    scope = TIMM_SCOPE

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.in_chans = 3

    def build(self, cls: Any, kwargs: dict[str, Any]) -> nn.Module:
        if not isinstance(cls, TimmModel):
            raise TypeError(f"{cls!r} is not a timm model: TimmAdapter builds 'timm.<model name>' types")
        if "features_only" in kwargs:
            raise ValueError("features_only is not an argument of a timm block: it is always True")
        _check_pretrained(kwargs)
        try:
            with _missing_keys() as missing:
                module = cls(features_only=True, **kwargs)
        except (IndexError, AssertionError) as e:
            if "out_indices" not in kwargs:
                raise
            raise ValueError(_bad_out_indices(cls, kwargs)) from e
        except _LOAD_ERRORS as e:
            if not kwargs.get("pretrained"):
                raise
            raise ValueError(_pretrained_failed(cls, kwargs, e)) from e
        if kwargs.get("pretrained"):
            _check_loaded(cls, kwargs, module, missing)
        info = module.feature_info
        stages = len(info.info)
        indices = [i % stages for i in info.out_indices]
        if len(set(indices)) != len(indices):
            raise ValueError(f"out_indices={tuple(info.out_indices)} selects a feature stage twice")
        self.names = tuple(f"stage{i}" for i in indices)
        self.in_chans = int(kwargs.get("in_chans", 3))
        return module

    def is_head(self, cls: Any) -> bool:
        return False

    def check_inputs(self, module: nn.Module, input_spec: Spec, where: str) -> None:
        if not isinstance(input_spec, FeatureSpec) or input_spec.channels != self.in_chans:
            raise ValueError(
                f"{where}: a timm backbone takes one image tensor of in_chans={self.in_chans} channels, "
                f"receives {describe(input_spec)}"
            )

    def output_spec(self, module: nn.Module, input_spec: Spec) -> Spec:
        info: Any = module.feature_info
        stride = input_spec.stride if isinstance(input_spec, FeatureSpec) else 1
        return {
            name: FeatureSpec(int(c), int(r) * stride)
            for name, c, r in zip(self.names, info.channels(), info.reduction())
        }

    def forward(self, module: nn.Module, x: Any) -> dict[str, Any]:
        return dict(zip(self.names, module(x)))


def _check_pretrained(kwargs: dict[str, Any]) -> None:
    """A local weights file must exist and be read (timm reads ``pretrained_cfg_overlay`` only when
    ``pretrained=True``)."""
    overlay = kwargs.get("pretrained_cfg_overlay")
    if overlay is None:
        return
    if not isinstance(overlay, dict):
        raise ValueError(f"pretrained_cfg_overlay must be a dict (e.g. dict(file=...)), got {overlay!r}")
    if not kwargs.get("pretrained"):
        raise ValueError(
            "pretrained_cfg_overlay is only read with pretrained=True: add pretrained=True or remove it"
        )
    file = overlay.get("file")
    if file is not None and not Path(file).is_file():
        raise ValueError(f"pretrained_cfg_overlay.file not found: {file}")


@contextlib.contextmanager
def _missing_keys() -> Iterator[list[str]]:
    """The weights timm's pretrained loading missed. With ``features_only`` timm loads non-strictly and only
    logs the keys it missed ("Missing keys (a, b) discovered ..." from ``timm.models._builder``): collect
    them."""
    missing: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if msg.startswith("Missing keys ("):
                missing.extend(msg[len("Missing keys (") : msg.index(")")].split(", "))

    logger = logging.getLogger("timm.models._builder")
    handler, level = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _check_loaded(cls: TimmModel, kwargs: dict[str, Any], module: nn.Module, missing: list[str]) -> None:
    """Refuse pretrained weights that left part of the model at its random init (the classifier, which a
    features model drops, aside): a file of another model, or of a features_only model, loads nothing."""
    from timm.models import get_pretrained_cfg_value

    classifier = get_pretrained_cfg_value(cls.name, "classifier") or ()
    dropped = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    left = [k for k in missing if not any(k.startswith(f"{c}.") for c in dropped)]
    if left:
        file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
        source = f"pretrained_cfg_overlay.file={file}" if file else "the pretrained weights"
        raise ValueError(
            f"{source} left {len(left)} tensors of timm's {cls.name} at their random init "
            f"(e.g. {', '.join(left[:3])}): {_file_hint(cls)}"
        )


def _file_hint(cls: TimmModel) -> str:
    arch = cls.name.split(".")[0]
    return (
        f"give the weights of timm's {arch} model itself (its timm.create_model('{arch}').state_dict() as "
        "timm publishes them, .safetensors or .pth), not of another model or of a features_only one"
    )


def _bad_out_indices(cls: TimmModel, kwargs: dict[str, Any]) -> str:
    """The error for ``out_indices`` beyond the model's stages, listing them (built on the meta device)."""
    import torch

    rest = {
        k: v for k, v in kwargs.items() if k not in ("out_indices", "pretrained", "pretrained_cfg_overlay")
    }
    with torch.device("meta"):
        info = cls(features_only=True, **rest).feature_info
    n = len(info.info)
    every = list(range(n))
    stages = ", ".join(
        f"{i}: {c}ch/s{r}" for i, c, r in zip(every, info.channels(every), info.reduction(every))
    )
    return (
        f"out_indices={tuple(kwargs['out_indices'])} but timm's {cls.name} has {n} feature stages "
        f"({stages}): use indices in 0..{n - 1} (or -{n}..-1)"
    )


def _pretrained_failed(cls: TimmModel, kwargs: dict[str, Any], error: Exception) -> str:
    reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if overlay.get("file"):
        return (
            f"pretrained_cfg_overlay.file={overlay['file']} could not be loaded into timm's {cls.name} "
            f"({type(error).__name__}: {reason}): {_file_hint(cls)}"
        )
    return (
        f"pretrained=True but timm could not get the weights of {cls.name} ({type(error).__name__}: "
        f"{reason}): without internet, download them elsewhere and give "
        "pretrained_cfg_overlay=dict(file='<weights .safetensors or .pth>'), or set pretrained=False"
    )
