"""timm models as blocks (``type='timm.<name>'``): parity with timm's own features model, outputs named per
stage with channels/strides from ``feature_info``, local pretrained files, and one-line errors at build.

Only timm's tiny ``test_*`` models, randomly initialised: nothing is downloaded (HF_HUB_OFFLINE=1 where a
pretrained path is touched)."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from safetensors.torch import save_file

from multitask_vision.models import GraphError, MultiTaskModel
from multitask_vision.models.adapters import TimmAdapter, default_adapter
from multitask_vision.models.block_types import TimmModel, resolve_block_type
from multitask_vision.models.losses import build_loss
from multitask_vision.models.spec import FeatureSpec

IMG = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
# (timm model, out_indices, stage names): CNNs whose first feature is the stride-2 stem (resnet, efficientnet),
# one whose first is stride 4 (convnext), and a ViT whose features are transformer blocks (all stride 16)
CASES = [
    ("test_resnet", (2, 3, 4), ("stage2", "stage3", "stage4")),
    ("test_efficientnet", (1, 3, -1), ("stage1", "stage3", "stage4")),
    ("test_convnext", (0, 1, 2, 3), ("stage0", "stage1", "stage2", "stage3")),
    ("test_vit", (3, 5), ("stage3", "stage5")),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing may reach the network: the hub client reads HF_HUB_OFFLINE when it is first imported."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def with_head(backbone: dict, stage: str = "stage4", channels: int = 96) -> MultiTaskModel:
    """``backbone`` (block keys without name/inputs) and a depth head on its output ``stage``."""
    head = dict(name="head", type="DepthHead", inputs=f"backbone.{stage}", task="depth", in_channels=channels,
                channels=8)  # fmt: skip
    return MultiTaskModel(blocks=[dict(name="backbone", inputs="img", **backbone), head])


@pytest.mark.parametrize("name, out_indices, names", CASES, ids=[c[0] for c in CASES])
def test_outputs_equal_timms_features_model_with_the_same_weights(name, out_indices, names):
    ref = timm.create_model(name, features_only=True, out_indices=out_indices).eval()
    torch.manual_seed(1)  # another init than ref's: the parity below holds because the weights are copied
    model = with_head(
        dict(type=f"timm.{name}", out_indices=out_indices), names[-1], ref.feature_info.channels()[-1]
    )
    block = model.eval().blocks["backbone"]
    assert type(block) is type(
        ref
    )  # the block is timm's own features model: timm's state dict loads strictly
    block.load_state_dict(ref.state_dict())
    with torch.no_grad():
        outs = model.block_outputs(IMG, ["backbone"])["backbone"]
        expected = ref(IMG)
    assert list(outs) == list(names)
    assert len(expected) == len(names) and all(torch.equal(o, e) for o, e in zip(outs.values(), expected))
    # the published spec is timm's feature_info, and it describes the real outputs
    info = ref.feature_info
    assert model.specs["backbone"] == {
        n: FeatureSpec(c, r) for n, c, r in zip(names, info.channels(), info.reduction())
    }
    for n, t in outs.items():
        spec = model.specs["backbone"][n]
        assert t.shape[1] == spec.channels and IMG.shape[-1] // t.shape[-1] == spec.stride, n


def test_stage_outputs_feed_blocks_by_name_and_edges_are_checked():
    blocks = [
        dict(name="backbone", type="timm.test_resnet", inputs="img", out_indices=(2, 3, 4)),
        dict(name="neck", type="FPN", inputs=["backbone.stage3", "backbone.stage4"], in_channels=[192, 96],
             out_channels=16),
        dict(name="seg", type="SegHead", inputs="neck", task="segmentation", num_classes=3, in_channels=[16, 16],
             channels=8),
        dict(name="depth", type="DepthHead", inputs="backbone.stage2", task="depth", in_channels=48, channels=8),
    ]  # fmt: skip
    model = MultiTaskModel(blocks=copy.deepcopy(blocks)).eval()
    assert isinstance(model.adapters["backbone"], TimmAdapter)
    with torch.no_grad():
        out = model.tensor(IMG)
        feats = model.block_outputs(IMG, ["backbone"])["backbone"]
        neck = model.block_outputs(IMG, ["neck"])["neck"]
    assert out["seg"].shape == (2, 3, 4, 6) and out["depth"].shape == (2, 1, 8, 12)  # strides 16 and 8
    direct = model.blocks["neck"]((feats["stage3"], feats["stage4"]))  # backbone.stage3/4 reached the neck
    assert all(torch.equal(a, b) for a, b in zip(neck, direct))

    bad = copy.deepcopy(blocks)
    bad[1]["in_channels"] = [192, 512]
    with pytest.raises(GraphError) as e:
        MultiTaskModel(blocks=bad)
    assert str(e.value) == (
        "edge backbone.stage3, backbone.stage4 -> neck: in_channels[1]=512 but input 1 has 96 channels "
        "(receives (192ch/s16, 96ch/s32))"
    )
    bad = copy.deepcopy(blocks)
    bad[3]["inputs"] = "backbone.stage1"  # not in out_indices
    with pytest.raises(
        GraphError, match=r"no sub-output 'stage1'; available: \['stage2', 'stage3', 'stage4'\]"
    ):
        MultiTaskModel(blocks=bad)


def test_timm_scope_resolves_in_timms_registry_and_has_its_adapter():
    assert resolve_block_type("timm.test_resnet") == ("timm", TimmModel("test_resnet"))
    assert resolve_block_type("timm.resnet18.a1_in1k") == (
        "timm",
        TimmModel("resnet18.a1_in1k"),
    )  # a weights tag
    assert TimmAdapter.scope == "timm" and default_adapter("timm") == "TimmAdapter"


@pytest.mark.parametrize(
    "backbone, message",
    [
        (dict(type="timm.test_resnett"),
         "block 'backbone': block type 'timm.test_resnett' is not a timm model (timm.list_models()); close matches: "
         "timm.test_resnet"),
        (dict(type="timm.resnet18.a9_in1k"),
         "block 'backbone': block type 'timm.resnet18.a9_in1k': timm has no weights tagged 'a9_in1k' "
         "(timm.resnet18.a1_in1k, "),
        (dict(type="test_resnet"), "block 'backbone': unknown block type 'test_resnet'; timm has it: write 'timm.test_resnet'"),
        (dict(type="timm.test_resnet", out_indices=(2, 5)),
         "block 'backbone' (timm.test_resnet) could not be built: out_indices=(2, 5) but timm's test_resnet has 5 "
         "feature stages (0: 32ch/s2, 1: 32ch/s4, 2: 48ch/s8, 3: 192ch/s16, 4: 96ch/s32): use indices in 0..4 "
         "(or -5..-1)"),
        (dict(type="timm.test_vit", out_indices=(6,)), "out_indices=(6,) but timm's test_vit has 6 feature stages"),
        (dict(type="timm.test_resnet", out_indices=(4, -1)),
         "block 'backbone' (timm.test_resnet) could not be built: out_indices=(4, -1) selects a feature stage twice"),
        (dict(type="timm.test_resnet", features_only=False), "features_only is not an argument of a timm block"),
        (dict(type="timm.test_resnet", pretrained_cfg_overlay=dict(file="w.pth")),
         "could not be built: pretrained_cfg_overlay is only read with pretrained=True: add pretrained=True or "
         "remove it"),
        (dict(type="timm.test_resnet", pretrained=True, pretrained_cfg_overlay=dict(file="nowhere/w.pth")),
         "could not be built: pretrained_cfg_overlay.file not found: nowhere/w.pth"),
        (dict(type="timm.test_resnet", stem_widht=8), "unexpected keyword argument 'stem_widht'"),
    ],
    ids=["unknown", "tag", "unscoped", "out_indices", "vit_out_indices", "twice", "features_only", "overlay",
         "no_file", "kwarg"],
)  # fmt: skip
def test_bad_timm_blocks_fail_at_build_with_one_line(backbone, message):
    with pytest.raises(GraphError) as e:
        with_head(backbone)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_timm_models_are_not_losses():
    with pytest.raises(ValueError, match="a timm model can only be a block"):
        build_loss(dict(type="timm.test_resnet"), "SegHead: loss")


def test_pretrained_without_a_local_file_and_no_internet_says_what_to_do():
    with pytest.raises(GraphError) as e:
        with_head(dict(type="timm.test_resnet", pretrained=True))
    msg = str(e.value)
    assert msg.startswith(
        "block 'backbone' (timm.test_resnet) could not be built: pretrained=True but timm could not get the weights "
        "of test_resnet (LocalEntryNotFoundError: "
    )
    assert (
        "pretrained_cfg_overlay=dict(file='<weights .safetensors or .pth>'), or set pretrained=False" in msg
    )
    assert "\n" not in msg


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_pretrained_local_file_loads_and_survives_init_weights(tmp_path, suffix):
    torch.manual_seed(1)
    weights = timm.create_model(
        "test_resnet"
    ).state_dict()  # timm's classification model, as timm publishes it
    path = tmp_path / f"test_resnet.{suffix}"
    save_file(weights, str(path)) if suffix == "safetensors" else torch.save(weights, path)
    torch.manual_seed(2)
    overlay = dict(file=str(path))
    model = with_head(dict(type="timm.test_resnet", pretrained=True, pretrained_cfg_overlay=overlay))
    model.init_weights()  # what the Runner calls before training: must not re-initialise the loaded weights
    loaded = model.blocks["backbone"].state_dict()
    assert loaded.keys() == {k for k in weights if not k.startswith("fc.")}  # the classifier is no feature
    assert all(torch.equal(v, weights[k]) for k, v in loaded.items())


def test_pretrained_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "convnext.safetensors"
    save_file(timm.create_model("test_convnext").state_dict(), str(path))
    with pytest.raises(GraphError) as e:
        with_head(dict(type="timm.test_resnet", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))))
    assert (
        f"pretrained_cfg_overlay.file={path} left 75 tensors of timm's test_resnet at their random init"
        in str(e.value)
    )
