"""ResNet backbone: torchvision's ResNet-{18,34,50,101,152} without its classifier, returning named stages.

Submodule names are torchvision's (``conv1``, ``bn1``, ``layer1`` ...), so a torchvision ImageNet state dict
loads as is (its ``fc.*`` keys are the only leftovers). ``base_channels`` narrows (or widens) every stage:
torchvision's own blocks, stage builder and initialisation, with the stem and stages ``base_channels * (1, 2, 4,
8)`` wide instead of torchvision's fixed 64 (the quickstart's 3/8-width ResNet-18 is ``base_channels=24``).
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from multitask_vision.models.blocks import Block
from multitask_vision.models.spec import IMAGE_SPEC, FeatureSpec, Spec
from multitask_vision.registry import MODELS

_DEPTHS = {  # depth: (torchvision's builder, its block, blocks per stage)
    18: (torchvision.models.resnet18, BasicBlock, (2, 2, 2, 2)),
    34: (torchvision.models.resnet34, BasicBlock, (3, 4, 6, 3)),
    50: (torchvision.models.resnet50, Bottleneck, (3, 4, 6, 3)),
    101: (torchvision.models.resnet101, Bottleneck, (3, 4, 23, 3)),
    152: (torchvision.models.resnet152, Bottleneck, (3, 8, 36, 3)),
}

STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def _stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a residual stage: the last BatchNorm of its last block (bn2 basic, bn3 bottleneck)."""
    norms = [m for m in stage[-1].modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


class _WidthResNet(torchvision.models.resnet.ResNet):
    """torchvision's ResNet, ``base_channels`` wide: its ``__init__`` with the width 64 made a parameter (no
    classifier). The stages come from torchvision's own ``_make_layer`` and blocks."""

    def __init__(self, depth: int, base_channels: int, zero_init_residual: bool) -> None:
        nn.Module.__init__(self)
        _, block, layers = _DEPTHS[depth]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = base_channels, 1, 1, 64
        self.conv1 = nn.Conv2d(3, base_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (name, blocks) in enumerate(zip(STAGES, layers, strict=True)):
            setattr(
                self, name, self._make_layer(block, base_channels * 2**i, blocks, stride=1 if i == 0 else 2)
            )
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.constant_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight, 0)


@MODELS.register_module(name=["ResNet", "ResNetBackbone"])  # ResNetBackbone: the origin README's name
class ResNet(Block):
    """ResNet trunk. ``forward(img (B, 3, H, W)) -> {stage: (B, C, H / s, W / s)}`` for ``out_stages``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_stages: which of ``layer1..layer4`` (strides 4, 8, 16, 32) to return; stages after the last one
            requested are not built.
        frozen_stages: -1 freezes nothing, 0 the stem, ``i`` the stem and ``layer1..layer<i>`` (no gradients,
            kept in eval mode).
        norm_eval: keep every BatchNorm in eval mode while training (frozen running statistics).
        zero_init_residual: zero the last BN of each residual branch (torchvision's option).
        base_channels: width of the stem and ``layer1``; ``layer<i>`` is ``base_channels * 2**(i-1)`` wide
            (times 4 for the bottleneck depths). 64 is torchvision's ResNet (and its ImageNet weights); 32 has
            about a quarter of the multiply-adds and parameters.
    """

    in_channels = 3

    def __init__(
        self,
        *,
        depth: int = 50,
        out_stages: tuple[str, ...] | list[str] = STAGES,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        zero_init_residual: bool = False,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        unknown = [s for s in out_stages if s not in STAGES]
        if unknown or not out_stages or len(set(out_stages)) != len(out_stages):
            raise ValueError(
                f"ResNet out_stages must be distinct names from {STAGES}, got {tuple(out_stages)}"
            )
        if not -1 <= frozen_stages <= len(STAGES):
            raise ValueError(f"ResNet frozen_stages must be in [-1, {len(STAGES)}], got {frozen_stages}")
        if not isinstance(base_channels, int) or isinstance(base_channels, bool) or base_channels < 1:
            raise ValueError(f"ResNet base_channels must be a positive int, got {base_channels!r}")
        self.depth = depth
        self.out_stages = tuple(s for s in STAGES if s in out_stages)  # fine to coarse
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        if base_channels == 64:  # torchvision's builder itself: the same modules and initialisation draws
            net = _DEPTHS[depth][0](weights=None, zero_init_residual=zero_init_residual)
        else:
            net = _WidthResNet(depth, base_channels, zero_init_residual)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.num_stages = STAGES.index(self.out_stages[-1]) + 1
        for name in STAGES[: self.num_stages]:
            setattr(self, name, getattr(net, name))
        self.stage_channels = {
            name: _stage_channels(getattr(self, name)) for name in STAGES[: self.num_stages]
        }
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1] + [getattr(self, STAGES[i]) for i in range(self.frozen_stages)]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def output_spec(self, input_spec: Spec = IMAGE_SPEC) -> dict[str, FeatureSpec]:
        base = input_spec.stride if isinstance(input_spec, FeatureSpec) else 1
        return {s: FeatureSpec(self.stage_channels[s], base * STAGE_STRIDES[s]) for s in self.out_stages}

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(img))))  # (B, 64, H/4, W/4)
        outs = {}
        for name in STAGES[: self.num_stages]:
            x = getattr(self, name)(x)  # (B, C_stage, H/s, W/s)
            if name in self.out_stages:
                outs[name] = x
        return outs
