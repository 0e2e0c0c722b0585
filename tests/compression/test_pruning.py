"""Pruning steps on the tiny model: what each method changes, prediction layers kept, save and reload."""

from __future__ import annotations

import copy

import torch
from torch import nn

from multitask_vision.compression.pruning import (
    PRUNED_FORMAT,
    PhysicalPruning,
    StructuredPruning,
    UnstructuredPruning,
    count_params,
    load_pruned,
    prediction_layers,
    save_pruned,
)
from tests.compression.conftest import TINY, build

PREDICTION = {
    "blocks.det_head.conv_cls",
    "blocks.det_head.conv_reg",
    "blocks.det_head.conv_centerness",
    "blocks.seg_head.conv_out",
    "blocks.depth_head.conv_out",
}
IMG = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def convs(model, prefix=""):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n.startswith(prefix)}


def test_prediction_layers_are_the_heads_output_convs():
    assert set(prediction_layers(build(), IMG)) == PREDICTION


def test_unstructured_and_structured_zero_weights_permanently():
    model = build()
    before = {n: m.weight.detach().clone() for n, m in convs(model).items()}
    info = UnstructuredPruning(amount=0.3).apply(model, IMG)
    assert not any("weight_orig" in n for n, _ in model.named_parameters())  # prune.remove made it permanent
    targeted = [m.weight for n, m in convs(model).items() if n not in PREDICTION]
    zeros = sum(int((w == 0).sum()) for w in targeted) / sum(w.numel() for w in targeted)
    assert abs(zeros - 0.3) < 0.01 and info["pruned_layers"] == len(targeted)
    assert all(torch.equal(convs(model)[n].weight, before[n]) for n in PREDICTION)

    model = build()
    StructuredPruning(amount=0.5, targets=["backbone"], norm=1).apply(model, IMG)
    for name, conv in convs(model).items():
        dead = int((conv.weight.flatten(1).abs().sum(1) == 0).sum())
        assert dead == (round(0.5 * conv.out_channels) if name.startswith("blocks.backbone") else 0), name
    assert count_params(model) == count_params(build())  # masks, not removal


def test_physical_pruning_shrinks_targets_keeps_outputs_and_reloads(tmp_path):
    model = build()
    with torch.no_grad():
        shapes = [t.shape for t in model.tensor(IMG)["det_head"][0]]
    PhysicalPruning(amount=0.5, targets=["backbone", "neck"]).apply(model, IMG)
    assert count_params(model) < 0.5 * count_params(build())
    assert model.blocks.backbone.layer2[0].conv1.out_channels == 64  # 128 halved, a multiple of round_to
    assert model.blocks.seg_head.laterals[0][0].out_channels == 16  # not a target: only its inputs shrink
    assert model.blocks.seg_head.laterals[0][0].in_channels == 16  # the FPN output it reads
    assert all(m.num_channels % m.num_groups == 0 for m in model.modules() if isinstance(m, nn.GroupNorm))
    with torch.no_grad():
        outs = model.tensor(IMG)
    assert [t.shape for t in outs["det_head"][0]] == shapes

    path = save_pruned(model, tmp_path / "pruned.pth", build_cfg())
    blob = torch.load(path, weights_only=True)  # plain tensors and values: weights-only loading stays on
    assert (
        blob["format"] == PRUNED_FORMAT
        and blob["shapes"]["blocks.neck.fpn.inner_blocks.0.0"]["out_channels"] == 16
    )
    reloaded = load_pruned(path)
    with torch.no_grad():
        again = reloaded.tensor(IMG)
    assert torch.equal(again["seg_head"], outs["seg_head"]) and torch.equal(
        again["depth_head"], outs["depth_head"]
    )


def build_cfg():
    from mmengine.config import Config

    return Config.fromfile(str(TINY)).model


# timm backbones: ConvNeXt (LayerNorm2d whose normalized_shape shrinks, layer-scale gammas) and a ViT (attention
# reshapes by num_heads, so its projections, and with them the residual stream, stay whole; the MLPs shrink)
TIMM_VIT = dict(
    type="MultiTaskModel",
    blocks=[
        dict(name="backbone", type="timm.test_vit", inputs="img", out_indices=(3, 5)),
        dict(name="neck", type="FPN", inputs=["backbone.stage3", "backbone.stage5"], in_channels=[64, 64],
             out_channels=32),
        dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=5,
             in_channels=[32, 32], channels=16),
        dict(name="depth_head", type="DepthHead", inputs="neck.0", task="depth", in_channels=32, channels=16),
    ],
)  # fmt: skip


def test_physical_pruning_of_timm_backbones_runs_and_reloads(tmp_path):
    from mmengine.config import Config

    from multitask_vision.compression.pruning import attention_layers
    from multitask_vision.registry import MODELS
    from tests.compression.conftest import TINY_TIMM

    other = torch.randn(1, 3, 96, 128)  # another batch and size than the pruning example
    # the ViT keeps its attention projections whole: it shrinks less
    for cfg, kept in ((Config.fromfile(str(TINY_TIMM)).model, 0.6), (TIMM_VIT, 0.8)):
        torch.manual_seed(0)
        model = MODELS.build(copy.deepcopy(cfg)).eval()
        attention = attention_layers(model)
        whole = {n: (m.in_features, m.out_features) for n, m in attention.items()}
        before = count_params(model.blocks.backbone)
        PhysicalPruning(amount=0.5, targets=["backbone"]).apply(model, IMG)
        assert count_params(model.blocks.backbone) < kept * before
        with torch.no_grad():
            outs = model.tensor(other)
        path = save_pruned(model, tmp_path / "pruned.pth", cfg)
        with torch.no_grad():
            again = load_pruned(path).tensor(other)
        assert torch.equal(again["seg_head"], outs["seg_head"]) and torch.equal(
            again["depth_head"], outs["depth_head"]
        )
        if cfg is TIMM_VIT:
            assert len(attention) == 2 * 6  # qkv and proj of each of the 6 blocks
            assert all((m.in_features, m.out_features) == whole[n] for n, m in attention.items())
            vit = model.blocks.backbone.model
            assert all(block.mlp.fc1.out_features == 96 for block in vit.blocks)  # the MLPs shrink: 192 -> 96
        else:
            norms = [m for m in model.blocks.backbone.modules() if isinstance(m, nn.LayerNorm)]
            assert any(m.normalized_shape[0] < 24 for m in norms)  # stem norm 24 -> shrunk, reloaded alike
