"""Adapters for mmdet and mmseg blocks: call them exactly as mmdet's detectors and mmseg's segmentors do.

* Backbones and necks are called with one tensor or a tuple of tensors, as in their toolbox.
* mmdet dense heads (``BaseDenseHead``: FCOS, RetinaNet, ATSS, GFL, ...) train with their own
  ``loss(x, data_samples)`` and predict with ``predict(x, data_samples, rescale=True)``, so their configured
  ``loss_cls``/``loss_bbox``, assigners, samplers, ``train_cfg`` and ``test_cfg`` all apply.
* mmseg decode heads (``BaseDecodeHead``: FCN, ASPP, PSP, UPer, SegFormer, ...) train with
  ``loss(inputs, data_samples, train_cfg)`` (every ``loss_decode`` in its list) and predict with
  ``predict(inputs, metas, test_cfg)`` followed by the same post-processing as mmseg's ``EncoderDecoder``
  (crop the padding, resize to the original size, argmax).

What a foreign block outputs is not declared anywhere, so its output spec is measured once at build time by a
dry run on zeros shaped after its inputs' specs.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from torch import nn

from multitask_vision.models.adapters.base import BlockAdapter
from multitask_vision.models.spec import FeatureSpec, Spec, check_in_channels, describe
from multitask_vision.registry import ADAPTERS

# Side of the zero image used to measure a foreign block's outputs: divisible by every usual stride (<= 128).
DRY_RUN_SIZE = 256
_CFG_KWARGS = ("train_cfg", "test_cfg")


def _as_configdict(value: Any) -> Any:
    return ConfigDict(value) if isinstance(value, dict) and not isinstance(value, ConfigDict) else value


def _dummy(spec: Spec) -> Any:
    """Zeros with the structure, channels and stride of ``spec`` (batch 1, image side ``DRY_RUN_SIZE``)."""
    if isinstance(spec, FeatureSpec):
        side = max(DRY_RUN_SIZE // spec.stride, 1)
        return torch.zeros(1, spec.channels, side, side)
    if isinstance(spec, dict):
        return {k: _dummy(v) for k, v in spec.items()}
    if isinstance(spec, tuple):
        return tuple(_dummy(s) for s in spec)
    raise ValueError(f"cannot make a dry-run input for spec {spec!r}")


def _measure(out: Any) -> Spec:
    if isinstance(out, torch.Tensor):
        if out.dim() != 4:
            return None
        return FeatureSpec(int(out.shape[1]), max(DRY_RUN_SIZE // int(out.shape[-1]), 1))
    if isinstance(out, dict):
        return {k: _measure(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return tuple(_measure(v) for v in out)
    return None


def _sum_lists(losses: dict) -> dict:
    """mmdet heads may return per-level lists of losses (e.g. RetinaNet); mmengine would sum them anyway."""
    return {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items()}


class OpenMMLabAdapter(BlockAdapter):
    """What mmdet and mmseg blocks share: ConfigDict train/test cfgs and dry-run output specs."""

    head_base: type | None = None

    def build(self, cls: type, kwargs: dict[str, Any]) -> nn.Module:
        for key in _CFG_KWARGS:
            if key in kwargs:
                kwargs[key] = _as_configdict(kwargs[key])
        return cls(**kwargs)

    def is_head(self, cls: type) -> bool:
        return self.head_base is not None and issubclass(cls, self.head_base)

    def output_spec(self, module: nn.Module, input_spec: Spec) -> Spec:
        if self.is_head(type(module)):
            return None  # a head's raw outputs feed no block: not measured
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                out = self.forward(module, _dummy(input_spec))
        except Exception as e:  # noqa: BLE001 - any failure here means the input does not fit
            raise ValueError(f"{type(module).__name__} fails on inputs {describe(input_spec)}: {e}") from e
        finally:
            module.train(was_training)
        return _measure(out)


@ADAPTERS.register_module()
class MMDetAdapter(OpenMMLabAdapter):
    scope = "mmdet"

    def __init__(self) -> None:
        from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

        self.head_base = BaseDenseHead

    def expected_in_channels(self, module: Any) -> Any:
        expected = getattr(module, "in_channels", None)
        return expected if isinstance(expected, (int, list, tuple)) else None

    def forward(self, module: Any, x: Any) -> Any:
        if self.is_head(type(module)) and isinstance(x, torch.Tensor):
            x = (x,)  # a dense head always takes a tuple of levels
        return module(x)

    def loss(self, module: Any, x: Any, data_samples: list) -> dict:
        return _sum_lists(module.loss(tuple(x) if not isinstance(x, torch.Tensor) else (x,), data_samples))

    def predict(self, module: Any, x: Any, data_samples: list) -> None:
        x = tuple(x) if not isinstance(x, torch.Tensor) else (x,)
        self._write(data_samples, module.predict(x, data_samples, rescale=True))

    def output_names(self, module: Any) -> tuple[str, ...] | None:
        """FCOS-style heads: class scores, box distances and centerness per level; anchor heads (RetinaNet,
        ...): class scores and box deltas per level. Other dense heads get generic names."""
        from mmdet.models.dense_heads import AnchorHead, FCOSHead

        if isinstance(module, FCOSHead):
            return ("cls", "bbox", "ctr")
        if isinstance(module, AnchorHead):
            return ("cls", "bbox")
        return None

    def predict_from_outputs(self, module: Any, outputs: Any, data_samples: list) -> None:
        # BaseDenseHead.predict is ``predict_by_feat(*self(x), batch_img_metas=..., rescale=...)``
        metas = [s.metainfo for s in data_samples]
        self._write(data_samples, module.predict_by_feat(*outputs, batch_img_metas=metas, rescale=True))

    @staticmethod
    def _write(data_samples: list, results: list) -> None:
        for sample, result in zip(data_samples, results):
            sample.pred_instances = result


@ADAPTERS.register_module()
class MMSegAdapter(OpenMMLabAdapter):
    scope = "mmseg"

    def __init__(self) -> None:
        from mmseg.models.decode_heads.decode_head import BaseDecodeHead

        self.head_base = BaseDecodeHead

    def check_inputs(self, module: Any, input_spec: Spec, where: str) -> None:
        if not self.is_head(type(module)):
            expected = getattr(module, "in_channels", None)
            if isinstance(expected, (int, list, tuple)):
                check_in_channels(expected, input_spec, where)
            return
        # a decode head picks its inputs from the tuple it receives by ``in_index``
        levels = input_spec if isinstance(input_spec, tuple) else (input_spec,)
        index = module.in_index
        try:
            picked = tuple(levels[i] for i in index) if isinstance(index, (list, tuple)) else levels[index]
        except IndexError:
            raise ValueError(
                f"{where}: in_index={index} but the head receives {len(levels)} input(s): {describe(levels)}"
            ) from None
        expected = module.in_channels
        if module.input_transform == "resize_concat":
            check_in_channels(sum(expected), FeatureSpec(sum(p.channels for p in picked)), where)
        else:
            check_in_channels(expected, picked, where)

    @staticmethod
    def _levels(x: Any) -> list:
        return [x] if isinstance(x, torch.Tensor) else list(x)

    def forward(self, module: Any, x: Any) -> Any:
        if self.is_head(type(module)):
            return module(self._levels(x))
        return module(x)

    def loss(self, module: Any, x: Any, data_samples: list) -> dict:
        return _sum_lists(module.loss(self._levels(x), data_samples, ConfigDict()))

    def predict(self, module: Any, x: Any, data_samples: list) -> None:
        metas = [s.metainfo for s in data_samples]
        self._postprocess(module, module.predict(self._levels(x), metas, ConfigDict()), data_samples)

    def output_names(self, module: Any) -> str | None:
        return "logits" if self.is_head(type(module)) else None  # a decode head's (B, K, h, w) logits

    def predict_from_outputs(self, module: Any, outputs: Any, data_samples: list) -> None:
        # BaseDecodeHead.predict is ``predict_by_feat(self.forward(inputs), batch_img_metas)``
        metas = [s.metainfo for s in data_samples]
        self._postprocess(module, module.predict_by_feat(outputs, metas), data_samples)

    @staticmethod
    def _postprocess(module: Any, logits: torch.Tensor, data_samples: list) -> None:
        """EncoderDecoder.postprocess_result: crop the padding, resize to the original size, argmax/threshold."""
        from mmseg.models.utils import resize

        for i, sample in enumerate(data_samples):
            meta = sample.metainfo
            h, w = meta["img_shape"][:2]
            one = logits[i : i + 1, :, :h, :w]
            one = resize(
                one, size=meta["ori_shape"][:2], mode="bilinear", align_corners=module.align_corners
            )[0]
            if one.shape[0] > 1:
                pred = one.argmax(dim=0, keepdim=True)
            else:
                one = one.sigmoid()
                pred = (one > module.threshold).to(one)
            sample.seg_logits = PixelData(data=one)
            sample.pred_sem_seg = PixelData(data=pred)
