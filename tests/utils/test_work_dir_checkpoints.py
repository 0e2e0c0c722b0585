"""A work dir stands for its last checkpoint (resolve_checkpoint), and latest.pth follows the last checkpoint
(link_latest, LatestCheckpointHook in tests/engine/test_train.py)."""

from __future__ import annotations

import os

import pytest
import torch

from multitask_vision.utils.checkpoint import link_latest, load_checkpoint_file, resolve_checkpoint


def save(path, value: float):
    torch.save(dict(meta={}, state_dict={"w": torch.tensor([value])}), path)


def test_resolve_a_file_or_a_work_dir(tmp_path, monkeypatch):
    save(tmp_path / "iter_2.pth", 2.0)
    save(tmp_path / "iter_4.pth", 4.0)
    assert resolve_checkpoint(tmp_path / "iter_2.pth") == tmp_path / "iter_2.pth"
    # mmengine's record: the path as training wrote it (absolute, relative to where it ran, or stale)
    for record in (str(tmp_path / "iter_4.pth"), "work_dirs/x/iter_4.pth"):
        (tmp_path / "last_checkpoint").write_text(record + "\n")
        assert resolve_checkpoint(tmp_path) == tmp_path / "iter_4.pth"
    monkeypatch.chdir(tmp_path.parent)
    (tmp_path / "last_checkpoint").write_text(f"{tmp_path.name}/iter_4.pth")
    assert resolve_checkpoint(tmp_path.name).resolve() == (tmp_path / "iter_4.pth").resolve()
    # no usable record: latest.pth
    (tmp_path / "last_checkpoint").write_text("gone/iter_9.pth")
    link_latest(tmp_path / "iter_2.pth", tmp_path / "latest.pth")
    assert resolve_checkpoint(tmp_path) == tmp_path / "latest.pth"
    assert float(load_checkpoint_file(tmp_path)["state_dict"]["w"]) == 2.0  # every reader takes a work dir


def test_missing_files_and_empty_work_dirs_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^checkpoint not found: .*nope\.pth$"):
        resolve_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(
        FileNotFoundError, match=r"is a folder without a checkpoint \(last_checkpoint names none"
    ):
        resolve_checkpoint(tmp_path)


def test_latest_is_a_relative_symlink_replaced_in_place(tmp_path):
    save(tmp_path / "iter_2.pth", 2.0)
    save(tmp_path / "iter_4.pth", 4.0)
    assert link_latest(tmp_path / "iter_2.pth", tmp_path / "latest.pth") == "symlink"
    assert os.readlink(tmp_path / "latest.pth") == "iter_2.pth"  # the work dir can move
    assert link_latest(tmp_path / "iter_4.pth", tmp_path / "latest.pth") == "symlink"
    assert float(load_checkpoint_file(tmp_path / "latest.pth")["state_dict"]["w"]) == 4.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "iter_2.pth",
        "iter_4.pth",
        "latest.pth",
    ]  # no temp left
    other = tmp_path / "other"
    other.mkdir()
    link_latest(tmp_path / "iter_2.pth", other / "latest.pth")  # another folder: an absolute link
    assert os.readlink(other / "latest.pth") == str((tmp_path / "iter_2.pth").resolve())


def test_without_symlinks_a_hard_link_then_a_copy(tmp_path, monkeypatch):
    save(tmp_path / "iter_2.pth", 2.0)

    def refuse(*args, **kwargs):
        raise OSError("not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    assert link_latest(tmp_path / "iter_2.pth", tmp_path / "latest.pth") == "hardlink"
    assert (tmp_path / "latest.pth").stat().st_ino == (tmp_path / "iter_2.pth").stat().st_ino
    monkeypatch.setattr(os, "link", refuse)
    save(tmp_path / "iter_4.pth", 4.0)
    assert link_latest(tmp_path / "iter_4.pth", tmp_path / "latest.pth") == "copy"
    assert float(load_checkpoint_file(tmp_path / "latest.pth")["state_dict"]["w"]) == 4.0
    assert (
        float(load_checkpoint_file(tmp_path / "iter_2.pth")["state_dict"]["w"]) == 2.0
    )  # the old target kept


def test_init_from_takes_a_work_dir_too(tmp_path):
    from torch import nn

    from multitask_vision.models.checkpoint_init import load_block_weights

    torch.save(dict(meta={}, state_dict={"a.weight": torch.full((1, 1), 3.0), "a.bias": torch.zeros(1)}),
               tmp_path / "iter_1.pth")  # fmt: skip
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_1.pth"))
    blocks = nn.ModuleDict(dict(a=nn.Linear(1, 1)))
    load_block_weights(blocks, str(tmp_path), {"a.": "a."}, strict=True)
    assert float(blocks["a"].weight) == 3.0
    with pytest.raises(FileNotFoundError, match="init_from checkpoint not found: nope"):
        load_block_weights(blocks, "nope", {"a.": "a."})
