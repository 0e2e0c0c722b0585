"""Base of the per-pixel heads (segmentation, depth): a light semantic-FPN fusion and a small conv tower."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from multitask_vision.models.blocks import TaskHead
from multitask_vision.models.heads.utils import (
    check_num_levels,
    resize,
    spec_list,
    to_feature_list,
)
from multitask_vision.models.spec import FeatureSpec, Spec


class DenseHead(TaskHead):
    """``forward(x) -> (B, out_channels, H / s, W / s)`` at the finest input stride ``s``.

    Every input level goes through a 3x3 conv-BN-ReLU to ``channels``; levels are upsampled (bilinear) to the
    finest one and summed; then ``num_convs`` 3x3 conv-BN-ReLU and a 1x1 conv to ``out_channels``.

    Args:
        in_channels: an int for a single input tensor, a list for a tuple/dict of levels (one entry each).
        out_channels: channels of the raw output map (set by the subclass: classes, 1 for depth ...).
        channels: width of the fusion and of the conv tower.
        num_convs: 3x3 conv-BN-ReLU layers after the fusion (0 allowed).
    """

    def __init__(
        self, *, in_channels: int | list[int], out_channels: int, channels: int = 64, num_convs: int = 1
    ) -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"{type(self).__name__}: num_convs must be >= 0, got {num_convs}")
        self.in_channels = in_channels if isinstance(in_channels, int) else list(in_channels)
        levels = [in_channels] if isinstance(in_channels, int) else self.in_channels
        if not levels:
            raise ValueError(f"{type(self).__name__}: in_channels is empty")
        self.out_channels = out_channels
        # 3x3 conv (no bias) -> BN -> ReLU
        self.laterals = nn.ModuleList(Conv2dNormActivation(c, channels, 3) for c in levels)
        self.convs = nn.Sequential(*(Conv2dNormActivation(channels, channels, 3) for _ in range(num_convs)))
        self.conv_out = nn.Conv2d(channels, out_channels, 1)

    def output_spec(self, input_spec: Spec) -> FeatureSpec:
        specs = spec_list(input_spec, type(self).__name__)
        check_num_levels(specs, len(self.laterals), type(self).__name__)
        return FeatureSpec(self.out_channels, min(s.stride for s in specs))

    def forward_raw(self, x: Tensor | tuple[Tensor, ...] | dict[str, Tensor]) -> Tensor:
        feats = to_feature_list(x)  # [(B, C_i, h_i, w_i)]
        if len(feats) != len(self.laterals):
            raise ValueError(
                f"{type(self).__name__}: built for {len(self.laterals)} level(s), got {len(feats)}"
            )
        size = max((f.shape[-2:] for f in feats), key=lambda hw: hw[0] * hw[1])
        y = resize(self.laterals[0](feats[0]), size)  # (B, channels, h, w)
        for lateral, f in zip(self.laterals[1:], feats[1:]):
            y = y + resize(lateral(f), size)
        return self.conv_out(self.convs(y))  # (B, out_channels, h, w)

    def forward(self, x: Tensor | tuple[Tensor, ...] | dict[str, Tensor]) -> Tensor:
        return self.forward_raw(x)
