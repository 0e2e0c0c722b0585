"""Adapters: how the model builds, calls and trains one block, whatever toolbox it comes from.

The model only ever talks to blocks through an adapter, so it never needs to know a block's calling
convention, its ground-truth format or its task. One adapter per protocol (native, mmdet, mmseg): an adapter
class declares the registry scope whose blocks it serves by default (``scope = 'mmdet'``), and a block
overrides the choice with ``adapter='...'``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from multitask_vision.models.spec import Spec, check_in_channels
from multitask_vision.registry import ADAPTERS


def default_adapter(scope: str) -> str | None:
    """Name of the registered adapter that declares ``scope`` on its own class (``None`` if none does; a
    subclass of an adapter inherits no default role). Raises ``ValueError`` if several adapters declare it."""
    names = sorted(name for name, cls in ADAPTERS.module_dict.items() if vars(cls).get("scope") == scope)
    if len(names) > 1:
        raise ValueError(f"adapters {names} all declare scope {scope!r}: give the block an adapter=")
    return names[0] if names else None


class BlockAdapter:
    """Base adapter. Subclasses override what differs for their toolbox.

    ``scope``: the registry scope whose blocks this adapter serves when a block names no ``adapter``
    (``None``: only blocks that name it); declared on the class itself, not inherited."""

    scope: str | None = None

    def build(self, cls: type, kwargs: dict[str, Any]) -> nn.Module:
        return cls(**kwargs)

    def is_head(self, cls: type) -> bool:
        raise NotImplementedError

    def expected_in_channels(self, module: nn.Module) -> Any:
        """What the block declares it receives (int, list of ints, or None for 'not declared')."""
        return getattr(module, "in_channels", None)

    def check_inputs(self, module: nn.Module, input_spec: Spec, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` (the edge) if the inputs do not fit the block."""
        expected = self.expected_in_channels(module)
        if expected is not None:
            check_in_channels(expected, input_spec, where)

    def output_spec(self, module: nn.Module, input_spec: Spec) -> Spec:
        raise NotImplementedError

    def forward(self, module: nn.Module, x: Any) -> Any:
        """Raw outputs (``mode='tensor'``, export, and features for downstream blocks)."""
        return module(x)

    def loss(self, module: nn.Module, x: Any, data_samples: list) -> dict:
        raise NotImplementedError

    def predict(self, module: nn.Module, x: Any, data_samples: list) -> None:
        """Write the head's predictions into ``data_samples`` (original image coordinates)."""
        raise NotImplementedError

    def output_names(self, module: nn.Module) -> tuple[str, ...] | str | None:
        """Names of the block's raw outputs in an export (see ``TaskHead.output_names``); None: generic."""
        return None

    def runtime_manifest(self, module: nn.Module) -> dict[str, Any] | None:
        """How a runtime without the model decodes the head's exported outputs (see
        ``TaskHead.runtime_manifest``); None: by the head's own decoding (:meth:`predict_from_outputs`)."""
        return None

    def predict_from_outputs(self, module: nn.Module, outputs: Any, data_samples: list) -> None:
        """The same as :meth:`predict`, from the head's raw outputs (what :meth:`forward` returned, e.g. read
        back from ONNX Runtime): what scores an exported model."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot predict from the raw outputs of {type(module).__name__}"
        )
