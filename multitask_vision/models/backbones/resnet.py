"""ResNet backbone: torchvision's ResNet-{18,34,50,101,152} without its classifier, returning named stages.

Submodule names are torchvision's (``conv1``, ``bn1``, ``layer1`` ...), so a torchvision ImageNet state dict
loads as is (its ``fc.*`` keys are the only leftovers).
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from multitask_vision.models.blocks import Block
from multitask_vision.models.spec import IMAGE_SPEC, FeatureSpec, Spec
from multitask_vision.registry import MODELS

_BUILDERS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
    152: torchvision.models.resnet152,
}

STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def _stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a residual stage: the last BatchNorm of its last block (bn2 basic, bn3 bottleneck)."""
    norms = [m for m in stage[-1].modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


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
    ) -> None:
        super().__init__()
        if depth not in _BUILDERS:
            raise ValueError(f"ResNet depth must be one of {sorted(_BUILDERS)}, got {depth!r}")
        unknown = [s for s in out_stages if s not in STAGES]
        if unknown or not out_stages or len(set(out_stages)) != len(out_stages):
            raise ValueError(
                f"ResNet out_stages must be distinct names from {STAGES}, got {tuple(out_stages)}"
            )
        if not -1 <= frozen_stages <= len(STAGES):
            raise ValueError(f"ResNet frozen_stages must be in [-1, {len(STAGES)}], got {frozen_stages}")
        self.depth = depth
        self.out_stages = tuple(s for s in STAGES if s in out_stages)  # fine to coarse
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        net = _BUILDERS[depth](weights=None, zero_init_residual=zero_init_residual)
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
