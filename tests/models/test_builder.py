"""build_model: one way to build a trained model from a config and a Runner checkpoint, a bare state dict or a
pruned model file; anything that does not fit exactly is one line naming the keys."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from torch.utils._pytree import tree_leaves

from multitask_vision.models.builder import build_model
from tests.conftest import TINY_BLOCKS

IMG = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def config():
    return Config(dict(model=dict(type="MultiTaskModel", blocks=copy.deepcopy(TINY_BLOCKS))))


@pytest.fixture
def trained(config):
    torch.manual_seed(3)
    model = build_model(config)
    return model, model.tensor(IMG)


def same_outputs(a: dict, b: dict) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(torch.equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("layout", ["runner", "state_dict", "ddp"])
def test_loads_runner_checkpoints_and_bare_state_dicts(tmp_path, config, trained, layout):
    model, outs = trained
    state = model.state_dict()
    blob = {
        "runner": dict(meta=dict(iter=7), state_dict=state, optimizer={}),
        "state_dict": state,
        "ddp": dict(meta={}, state_dict={f"module.{k}": v for k, v in state.items()}),
    }[layout]
    torch.save(blob, tmp_path / "ck.pth")
    torch.manual_seed(99)  # another initialisation: only the file can make the outputs equal
    loaded = build_model(config, tmp_path / "ck.pth")
    assert not loaded.training
    with torch.no_grad():
        assert same_outputs(loaded.tensor(IMG), outs)


def test_loads_a_pruned_model_file(tmp_path, config):
    from multitask_vision.compression.pruning import PhysicalPruning, save_pruned

    torch.manual_seed(0)
    model = build_model(config)
    PhysicalPruning(amount=0.5, targets=["backbone"]).apply(model, IMG)
    path = save_pruned(model, tmp_path / "pruned.pth", config.model)
    loaded = build_model(config, path)
    assert loaded.blocks.backbone.layer1[0].conv1.out_channels == 32  # 64 halved: the recorded shape
    with torch.no_grad():
        assert same_outputs(loaded.tensor(IMG), model.tensor(IMG))


def test_cfg_options_change_the_built_model(config):
    model = build_model(config, cfg_options={"model.blocks.3.num_classes": 7})
    assert model.blocks.seg_head.num_classes == 7
    assert config.model.blocks[3]["num_classes"] == 4  # the caller's config is not modified


def test_a_checkpoint_of_another_model_is_one_line_naming_the_keys(tmp_path, config, trained):
    state = dict(trained[0].state_dict())
    state["blocks.seg_head.conv_out.weight"] = torch.zeros(9, 16, 1, 1)
    state["blocks.extra.weight"] = torch.zeros(1)
    del state["blocks.depth_head.conv_out.bias"]
    torch.save(dict(state_dict=state), tmp_path / "other.pth")
    with pytest.raises(ValueError) as info:
        build_model(config, tmp_path / "other.pth")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(
        f"checkpoint {tmp_path / 'other.pth'} does not match the config's model"
    )
    assert "1 missing key (in the model, not in the checkpoint): blocks.depth_head.conv_out.bias" in msg
    assert "1 unexpected key (in the checkpoint, not in the model): blocks.extra.weight" in msg
    assert (
        "1 key of another shape: blocks.seg_head.conv_out.weight (9, 16, 1, 1) vs model (4, 16, 1, 1)" in msg
    )


def test_missing_files_and_non_checkpoints(tmp_path, config):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pth"):
        build_model(config, tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="config file not found: nope.py"):
        build_model("nope.py")
    torch.save(dict(meta={}, optimizer={"lr": 1.0}), tmp_path / "no_weights.pth")
    with pytest.raises(ValueError, match="holds no state_dict"):
        build_model(config, tmp_path / "no_weights.pth")


def test_a_work_dir_means_its_last_checkpoint(tmp_path, config, trained):
    """As mmengine leaves a work dir: iter_N.pth files, ``last_checkpoint`` naming the last (a path relative to
    where training ran), and our ``latest.pth`` beside them."""
    from multitask_vision.utils.checkpoint import link_latest

    model, outs = trained
    wd = tmp_path / "wd"
    wd.mkdir()
    torch.save(dict(meta={}, state_dict=build_model(config).state_dict()), wd / "iter_2.pth")  # an older one
    torch.save(dict(meta={}, state_dict=model.state_dict()), wd / "iter_4.pth")
    (wd / "last_checkpoint").write_text("elsewhere/wd/iter_4.pth")  # training ran in another folder
    link_latest(wd / "iter_4.pth", wd / "latest.pth")
    for given in (wd, wd / "latest.pth"):
        torch.manual_seed(99)
        with torch.no_grad():
            assert same_outputs(build_model(config, given).tensor(IMG), outs), given
