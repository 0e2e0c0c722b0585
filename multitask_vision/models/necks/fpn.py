"""Feature Pyramid Network: torchvision's ``FeaturePyramidNetwork`` plus optional stride-2 conv levels."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from multitask_vision.models.blocks import Block
from multitask_vision.models.heads.utils import check_num_levels, spec_list, to_feature_list
from multitask_vision.models.spec import FeatureSpec, Spec
from multitask_vision.registry import MODELS


class _ConvLevels(ExtraFPNBlock):
    """Extra coarser levels from the top FPN output (RetinaNet/FCOS 'P6/P7 on output').

    Level ``k``: 3x3 conv stride 2 of the previous top level (ReLU before every conv but the first).
    """

    def __init__(self, channels: int, num_levels: int) -> None:
        super().__init__()
        convs = [nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_levels)]
        for conv in convs:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.convs = nn.ModuleList(convs)

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        top = results[-1]  # (B, C, h, w)
        for k, conv in enumerate(self.convs):
            top = conv(top if k == 0 else top.relu())  # (B, C, ceil(h / 2), ceil(w / 2))
            results.append(top)
            names.append(f"extra{k}")
        return results, names


@MODELS.register_module()
class FPN(Block):
    """``forward(levels fine -> coarse, tuple or dict) -> (P_0, ..., P_n-1, extra...)``, each ``out_channels``.

    Args:
        in_channels: channels of each input level, finest first.
        out_channels: channels of every output level.
        extra_levels: number of extra coarser levels appended (0, 1 or 2), each a stride-2 3x3 conv of the
            level above it (so strides double: with inputs at 8/16/32 and ``extra_levels=2``, outputs are at
            8/16/32/64/128 as FCOS/RetinaNet use).
    """

    def __init__(self, *, in_channels: list[int], out_channels: int = 256, extra_levels: int = 0) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("FPN needs at least one input level (in_channels is empty)")
        if extra_levels not in (0, 1, 2):
            raise ValueError(f"FPN extra_levels must be 0, 1 or 2, got {extra_levels!r}")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.extra_levels = extra_levels
        extra = _ConvLevels(out_channels, extra_levels) if extra_levels else None
        self.fpn = FeaturePyramidNetwork(self.in_channels, out_channels, extra_blocks=extra)

    def output_spec(self, input_spec: Spec) -> tuple[FeatureSpec, ...]:
        specs = spec_list(input_spec, "FPN")
        check_num_levels(specs, len(self.in_channels), "FPN")
        strides = [s.stride for s in specs]
        strides += [strides[-1] * 2 ** (k + 1) for k in range(self.extra_levels)]
        return tuple(FeatureSpec(self.out_channels, s) for s in strides)

    def forward(self, x: tuple[Tensor, ...] | dict[str, Tensor]) -> tuple[Tensor, ...]:
        feats = to_feature_list(x)  # [(B, C_i, H / s_i, W / s_i)] fine -> coarse
        outs = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        return tuple(outs.values())  # (B, out_channels, H / s_i, W / s_i) each
