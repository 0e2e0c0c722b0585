"""Light-Weight RefineNet decoder (Nekrasov et al., BMVC 2018), as used by HydraNet (Nekrasov et al., ICRA 2019).

From the coarsest level down: ``1x1 conv`` to ``channels`` -> add the upsampled coarser path -> ReLU -> Chained
Residual Pooling -> ``1x1 conv`` -> bilinear upsampling to the next finer level. The finest level stops after
its CRP; that map is the output.
"""

from __future__ import annotations

from torch import Tensor, nn

from multitask_vision.models.blocks import Block
from multitask_vision.models.heads.utils import check_num_levels, resize, spec_list, to_feature_list
from multitask_vision.models.spec import FeatureSpec, Spec
from multitask_vision.registry import MODELS


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def _crp_conv(channels: int, norm: bool) -> nn.Module:
    if not norm:
        return _conv1x1(channels, channels)
    return nn.Sequential(_conv1x1(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ChainedResidualPooling(nn.Module):
    """``x + sum_k top_k`` with ``top_k = conv1x1(maxpool5x5(top_{k-1}))``, ``top_0 = x`` (light-weight CRP).

    ``norm=True`` follows each 1x1 conv with BatchNorm + ReLU, as the HydraNet guide's ``_make_crp`` does.
    """

    def __init__(self, channels: int, stages: int, norm: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_crp_conv(channels, norm) for _ in range(stages))

    def forward(self, x: Tensor) -> Tensor:
        top = x  # (B, C, h, w)
        for conv in self.convs:
            top = conv(self.pool(top))  # (B, C, h, w)
            x = x + top
        return x


@MODELS.register_module()
class RefineNetDecoder(Block):
    """``forward(levels fine -> coarse, tuple or dict) -> (B, channels, H / s_0, W / s_0)``.

    Args:
        in_channels: channels of each input level, finest first (e.g. MobileNetV2 strides 4..32:
            ``[24, 32, 96, 320]``).
        channels: width of the decoder and of its output.
        crp_stages: pooling stages of every Chained Residual Pooling block (0 disables CRP).
        crp_norm: BatchNorm + ReLU after every CRP 1x1 conv (the HydraNet guide's ``_make_crp``); without them
            the CRP is the Light-Weight RefineNet paper's plain chain of 1x1 convs.
    """

    def __init__(
        self, *, in_channels: list[int], channels: int = 256, crp_stages: int = 4, crp_norm: bool = False
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("RefineNetDecoder needs at least one input level (in_channels is empty)")
        if crp_stages < 0:
            raise ValueError(f"RefineNetDecoder crp_stages must be >= 0, got {crp_stages}")
        self.in_channels = list(in_channels)
        self.channels = channels
        self.laterals = nn.ModuleList(_conv1x1(c, channels) for c in self.in_channels)
        self.crps = nn.ModuleList(
            ChainedResidualPooling(channels, crp_stages, crp_norm) for _ in self.in_channels
        )
        # adapts[i] maps level i + 1's output before it is upsampled onto level i.
        self.adapts = nn.ModuleList(_conv1x1(channels, channels) for _ in self.in_channels[1:])
        self.relu = nn.ReLU(inplace=False)

    def output_spec(self, input_spec: Spec) -> FeatureSpec:
        specs = spec_list(input_spec, "RefineNetDecoder")
        check_num_levels(specs, len(self.in_channels), "RefineNetDecoder")
        strides = [s.stride for s in specs]
        if strides != sorted(strides):
            raise ValueError(f"RefineNetDecoder: inputs must go from fine to coarse, got strides {strides}")
        return FeatureSpec(self.channels, strides[0])

    def forward(self, x: tuple[Tensor, ...] | dict[str, Tensor]) -> Tensor:
        feats = to_feature_list(x)  # [(B, C_i, H / s_i, W / s_i)] fine -> coarse
        top = self.crps[-1](self.relu(self.laterals[-1](feats[-1])))  # (B, channels, H / s_n, W / s_n)
        for i in reversed(range(len(feats) - 1)):
            y = self.laterals[i](feats[i])  # (B, channels, H / s_i, W / s_i)
            y = y + resize(self.adapts[i](top), y.shape[-2:])
            top = self.crps[i](self.relu(y))
        return top  # (B, channels, H / s_0, W / s_0)
