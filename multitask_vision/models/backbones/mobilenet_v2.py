"""MobileNetV2 backbone: torchvision's ``features`` trunk, returning the last feature map of every stride.

Outputs are named by their stride: ``stride2`` .. ``stride32``. At ``width_mult=1.0`` they are the outputs of
``features[1]`` (16 ch), ``[3]`` (24), ``[6]`` (32), ``[13]`` (96) and ``[17]`` (320); channels for other widths are
read from the built modules. The final 1x1 conv to 1280 channels (``features[18]``, a classifier neck) is
dropped. Submodules keep torchvision's names (``features.<i>``), so its ImageNet state dict loads as is.
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from multitask_vision.models.blocks import Block
from multitask_vision.models.spec import IMAGE_SPEC, FeatureSpec, Spec
from multitask_vision.registry import MODELS

STAGES = ("stride2", "stride4", "stride8", "stride16", "stride32")


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@MODELS.register_module()
class MobileNetV2(Block):
    """``forward(img (B, 3, H, W)) -> {'stride<s>': (B, C, H / s, W / s)}`` for ``out_stages``.

    Args:
        width_mult: torchvision's channel multiplier (channels rounded to multiples of 8).
        out_stages: names from ``stride2, stride4, stride8, stride16, stride32``; layers after the last one
            requested are not built.
    """

    in_channels = 3

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        out_stages: tuple[str, ...] | list[str] = ("stride4", "stride8", "stride16", "stride32"),
    ) -> None:
        super().__init__()
        unknown = [s for s in out_stages if s not in STAGES]
        if unknown or not out_stages or len(set(out_stages)) != len(out_stages):
            raise ValueError(
                f"MobileNetV2 out_stages must be distinct names from {STAGES}, got {tuple(out_stages)}"
            )
        self.out_stages = tuple(s for s in STAGES if s in out_stages)  # fine to coarse
        features = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult).features[:-1]

        # Index of the last layer at each stride, and the channels it gives.
        self.stage_ends: dict[str, int] = {}
        self.stage_channels: dict[str, int] = {}
        stride = 1
        for i, layer in enumerate(features):
            convs = _convs(layer)
            stride *= max(c.stride[0] for c in convs)
            self.stage_ends[f"stride{stride}"] = i
            self.stage_channels[f"stride{stride}"] = convs[-1].out_channels
        assert tuple(self.stage_ends) == STAGES, (
            f"unexpected torchvision MobileNetV2 strides {self.stage_ends}"
        )
        self.features = features[: self.stage_ends[self.out_stages[-1]] + 1]
        self._taps = {self.stage_ends[s]: s for s in self.out_stages}

    def output_spec(self, input_spec: Spec = IMAGE_SPEC) -> dict[str, FeatureSpec]:
        base = input_spec.stride if isinstance(input_spec, FeatureSpec) else 1
        return {
            s: FeatureSpec(self.stage_channels[s], base * int(s[len("stride") :])) for s in self.out_stages
        }

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        outs = {}
        x = img  # (B, 3, H, W)
        for i, layer in enumerate(self.features):
            x = layer(x)  # (B, C_i, H / s_i, W / s_i)
            if i in self._taps:
                outs[self._taps[i]] = x
        return outs
