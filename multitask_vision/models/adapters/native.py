"""Adapter for our own blocks: they already speak the contract of ``models/blocks.py``."""

from __future__ import annotations

from typing import Any, cast

from torch import nn

from multitask_vision.models.adapters.base import BlockAdapter
from multitask_vision.models.blocks import Block, TaskHead
from multitask_vision.models.spec import Spec
from multitask_vision.registry import ADAPTERS, SCOPE


@ADAPTERS.register_module()
class NativeAdapter(BlockAdapter):
    scope = SCOPE

    def build(self, cls: type, kwargs: dict[str, Any]) -> nn.Module:
        if not issubclass(cls, Block):
            raise TypeError(
                f"{cls.__name__} is not a multitask_vision Block; give it an adapter= for its protocol"
            )
        return cls(**kwargs)

    def is_head(self, cls: type) -> bool:
        return issubclass(cls, TaskHead)

    def output_spec(self, module: nn.Module, input_spec: Spec) -> Spec:
        return cast(Block, module).output_spec(input_spec)

    def loss(self, module: nn.Module, x: Any, data_samples: list) -> dict:
        return cast(TaskHead, module).loss(x, data_samples)

    def predict(self, module: nn.Module, x: Any, data_samples: list) -> None:
        cast(TaskHead, module).predict(x, data_samples)

    def predict_from_outputs(self, module: nn.Module, outputs: Any, data_samples: list) -> None:
        cast(TaskHead, module).predict_by_feat(outputs, data_samples)

    def output_names(self, module: nn.Module) -> tuple[str, ...] | str | None:
        return getattr(module, "output_names", None)

    def runtime_manifest(self, module: nn.Module) -> dict[str, Any] | None:
        return module.runtime_manifest() if isinstance(module, TaskHead) else None
