"""Native blocks: one contract test over every registered block, then backbone/neck specifics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import multitask_vision.models  # noqa: F401  (registers every block)
from multitask_vision.models.backbones import MobileNetV2, ResNet
from multitask_vision.models.blocks import Block
from multitask_vision.models.necks import FPN, RefineNetDecoder
from multitask_vision.models.spec import IMAGE_SPEC, FeatureSpec, Spec
from multitask_vision.registry import MODELS

SIZE = 64  # input images are (2, 3, SIZE, SIZE)


def pyramid(channels, strides) -> tuple[FeatureSpec, ...]:
    return tuple(FeatureSpec(c, s) for c, s in zip(channels, strides))


# Every registered Block needs at least one (constructor config, input spec) case here: the input is random
# data shaped like the spec. A block registered without a case fails `test_block_contract`.
CASES: dict[str, list[tuple[dict, Spec]]] = {
    "ResNet": [
        (dict(depth=18), IMAGE_SPEC),
        (dict(depth=50, out_stages=("layer2", "layer4")), IMAGE_SPEC),
    ],
    "MobileNetV2": [
        (
            dict(width_mult=0.5, out_stages=("stride2", "stride4", "stride8", "stride16", "stride32")),
            IMAGE_SPEC,
        ),
        (dict(out_stages=("stride8",)), IMAGE_SPEC),
    ],
    "FPN": [
        (dict(in_channels=[8, 16, 32], out_channels=16, extra_levels=2), pyramid([8, 16, 32], [8, 16, 32])),
        (
            dict(in_channels=[8, 16], out_channels=8, extra_levels=1),
            {"layer3": FeatureSpec(8, 16), "layer4": FeatureSpec(16, 32)},
        ),
    ],
    "RefineNetDecoder": [
        (
            dict(in_channels=[8, 12, 16, 24], channels=16, crp_stages=2),
            pyramid([8, 12, 16, 24], [4, 8, 16, 32]),
        ),
    ],
    "SegHead": [
        (dict(num_classes=5, in_channels=8, channels=8), FeatureSpec(8, 4)),
        (
            dict(num_classes=3, in_channels=[8, 8, 8], channels=8, num_convs=2),
            pyramid([8, 8, 8], [8, 16, 32]),
        ),
    ],
    "DepthHead": [
        (
            dict(in_channels=[8, 16], channels=8, num_convs=0),
            {"a": FeatureSpec(8, 8), "b": FeatureSpec(16, 16)},
        ),
    ],
    "AnchorFreeDetHead": [
        (
            dict(num_classes=3, in_channels=8, feat_channels=16, strides=(8, 16, 32, 64, 128)),
            pyramid([8] * 5, [8, 16, 32, 64, 128]),
        ),
    ],
}


def registered_blocks() -> list[str]:
    """Every Block the package registers (toy blocks that tests register are not the package's), by its own
    name: an alias (``ResNetBackbone``, another name of ``ResNet``) is the same class, tested once."""
    return sorted(
        name
        for name, cls in MODELS.module_dict.items()
        if isinstance(cls, type)
        and issubclass(cls, Block)
        and cls.__module__.startswith("multitask_vision.")
        and name == cls.__name__
    )


def random_input(spec: Spec):
    if isinstance(spec, FeatureSpec):
        side = math.ceil(SIZE / spec.stride)
        return torch.randn(2, spec.channels, side, side)
    if isinstance(spec, dict):
        return {k: random_input(v) for k, v in spec.items()}
    return tuple(random_input(s) for s in spec)


def assert_matches(out, spec: Spec, where: str) -> None:
    if isinstance(spec, FeatureSpec):
        side = math.ceil(SIZE / spec.stride)
        assert isinstance(out, Tensor), f"{where}: spec is a tensor, output is {type(out).__name__}"
        assert tuple(out.shape[1:]) == (spec.channels, side, side), f"{where}: {tuple(out.shape)} vs {spec}"
    elif isinstance(spec, dict):
        assert isinstance(out, dict) and list(out) == list(spec), f"{where}: keys {list(out)} vs {list(spec)}"
        for key in spec:
            assert_matches(out[key], spec[key], f"{where}.{key}")
    else:
        assert isinstance(spec, tuple), f"{where}: bad spec {spec!r}"
        assert isinstance(out, (tuple, list)) and len(out) == len(spec), f"{where}: {len(out)} vs {len(spec)}"
        for i, (o, s) in enumerate(zip(out, spec)):
            assert_matches(o, s, f"{where}.{i}")


def test_every_case_is_a_registered_block():
    assert set(CASES) <= set(registered_blocks()), set(CASES) - set(registered_blocks())


@pytest.mark.parametrize("name", registered_blocks())
def test_block_contract(name):
    assert name in CASES, f"registered block {name!r} has no contract case: add one to CASES in {__file__}"
    torch.manual_seed(0)
    for cfg, input_spec in CASES[name]:
        block = MODELS.build(dict(type=name, **cfg)).eval()
        spec = block.output_spec(input_spec)
        with torch.no_grad():
            out = block(random_input(input_spec))
        assert_matches(out, spec, f"{name}({cfg})")


# ------------------------------------------------------------------------------------------------ ResNet
def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet_depth_is_honoured():
    r18, r34, r50 = ResNet(depth=18), ResNet(depth=34), ResNet(depth=50)
    assert [s.channels for s in r18.output_spec().values()] == [64, 128, 256, 512]
    assert [s.channels for s in r50.output_spec().values()] == [256, 512, 1024, 2048]
    assert [s.stride for s in r50.output_spec().values()] == [4, 8, 16, 32]
    assert (len(r18.layer3), len(r34.layer3), len(r50.layer3)) == (2, 6, 6)
    assert n_params(r18) < n_params(r34) < n_params(r50)


def test_resnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"depth must be one of \[18, 34, 50, 101, 152\], got 42"):
        ResNet(depth=42)
    with pytest.raises(ValueError, match="out_stages"):
        ResNet(depth=18, out_stages=("layer5",))
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNet(depth=18, frozen_stages=5)
    with pytest.raises(ValueError, match="base_channels must be a positive int, got 0"):
        ResNet(depth=18, base_channels=0)


def test_resnet_builds_only_needed_stages():
    r = ResNet(depth=18, out_stages=("layer2",))
    assert not hasattr(r, "layer3") and not hasattr(r, "layer4")
    out = r(torch.randn(1, 3, SIZE, SIZE))
    assert list(out) == ["layer2"] and out["layer2"].shape == (1, 128, 8, 8)


def test_resnet_frozen_stages_and_norm_eval():
    r = ResNet(depth=18, frozen_stages=1).train()
    assert not any(p.requires_grad for m in (r.conv1, r.bn1, r.layer1) for p in m.parameters())
    assert all(p.requires_grad for p in r.layer2.parameters())
    assert not r.bn1.training and not r.layer1[0].bn1.training and r.layer2[0].bn1.training
    before = r.layer1[0].bn1.running_mean.clone()
    r(torch.randn(2, 3, SIZE, SIZE))
    assert torch.equal(before, r.layer1[0].bn1.running_mean)  # frozen BN statistics do not move

    r = ResNet(depth=18, norm_eval=True).train()
    bns = [m for m in r.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not any(m.training for m in bns) and r.layer4.training
    assert all(p.requires_grad for p in r.parameters())  # norm_eval freezes statistics, not weights


def test_resnet_zero_init_residual():
    assert torch.count_nonzero(ResNet(depth=18, zero_init_residual=True).layer1[0].bn2.weight) == 0
    assert torch.count_nonzero(ResNet(depth=18).layer1[0].bn2.weight) > 0


def test_resnet_loads_torchvision_state_dict():
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    missing, unexpected = ResNet(depth=18).load_state_dict(state, strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_base_channels_is_torchvisions_layout_at_another_width(depth):
    """base_channels=64 through the width builder is torchvision's model exactly (every key and shape, the
    init's statistics); other widths scale every stage and keep the structure."""
    import torchvision

    from multitask_vision.models.backbones.resnet import _WidthResNet

    tv = {k: v.shape for k, v in torchvision.models.get_model(f"resnet{depth}").state_dict().items()}
    rebuilt = _WidthResNet(depth, 64, zero_init_residual=False).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {
        k: s for k, s in tv.items() if not k.startswith("fc.")
    }
    assert rebuilt["layer2.0.conv2.weight"].std() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.1)  # fan_out

    half = ResNet(depth=depth, base_channels=32)
    full_channels = [s.channels for s in ResNet(depth=depth).output_spec().values()]
    assert [s.channels for s in half.output_spec().values()] == [c // 2 for c in full_channels]
    assert n_params(half) < n_params(ResNet(depth=depth)) / 3  # conv weights scale with width squared
    out = half(torch.randn(2, 3, SIZE, SIZE))
    assert {k: v.shape[1:] for k, v in out.items()} == {
        k: (s.channels, SIZE // s.stride, SIZE // s.stride) for k, s in half.output_spec().items()
    }
    zeroed = ResNet(depth=depth, base_channels=32, zero_init_residual=True).layer1[0]
    assert torch.count_nonzero(zeroed.bn2.weight if depth == 18 else zeroed.bn3.weight) == 0


# ------------------------------------------------------------------------------------------- MobileNetV2
def test_mobilenet_v2_channels_follow_width():
    full = MobileNetV2(out_stages=("stride2", "stride4", "stride8", "stride16", "stride32")).output_spec()
    assert {k: (s.channels, s.stride) for k, s in full.items()} == {
        "stride2": (16, 2),
        "stride4": (24, 4),
        "stride8": (32, 8),
        "stride16": (96, 16),
        "stride32": (320, 32),
    }
    wide = MobileNetV2(width_mult=1.4, out_stages=("stride32",))
    assert wide.output_spec()["stride32"].channels == 448
    assert wide(torch.randn(1, 3, SIZE, SIZE))["stride32"].shape == (1, 448, 2, 2)
    with pytest.raises(ValueError, match="out_stages"):
        MobileNetV2(out_stages=("layer1",))


# ---------------------------------------------------------------------------------------------- necks
def test_fpn_rejects_wrong_level_count_and_extra_levels():
    fpn = FPN(in_channels=[8, 16], out_channels=8)
    with pytest.raises(ValueError, match=r"built for 2 input level\(s\) but receives 3"):
        fpn.output_spec(pyramid([8, 16, 32], [8, 16, 32]))
    with pytest.raises(ValueError, match="extra_levels"):
        FPN(in_channels=[8], extra_levels=3)


def test_fpn_extra_levels_are_learned():
    fpn = FPN(in_channels=[8, 16], out_channels=8, extra_levels=2)
    assert n_params(fpn) > n_params(FPN(in_channels=[8, 16], out_channels=8))


def test_refinenet_order_and_crp_stages():
    with pytest.raises(ValueError, match="fine to coarse"):
        RefineNetDecoder(in_channels=[16, 8], channels=8).output_spec(pyramid([16, 8], [32, 16]))
    n2 = n_params(RefineNetDecoder(in_channels=[8, 16], channels=8, crp_stages=2))
    n4 = n_params(RefineNetDecoder(in_channels=[8, 16], channels=8, crp_stages=4))
    assert n4 - n2 == 2 * 2 * 8 * 8  # two more 1x1 convs (no bias) per level


def test_refinenet_crp_norm_adds_bn_relu_after_each_conv():
    plain = RefineNetDecoder(in_channels=[8, 16], channels=8, crp_stages=2)
    normed = RefineNetDecoder(in_channels=[8, 16], channels=8, crp_stages=2, crp_norm=True)
    assert n_params(normed) - n_params(plain) == 2 * 2 * 2 * 8  # a BN (weight + bias) per conv, 2 per level
    crp = normed.crps[0].train()
    x = torch.randn(2, 8, 6, 6)
    # every stage ends with a ReLU, so what the chain adds to its input is never negative
    assert (crp(x) - x).min() >= 0
    assert (plain.crps[0](x) - x).min() < 0
