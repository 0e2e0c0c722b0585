"""Checkpoints are loaded with an allow-list that runs nothing: a pickle built only from allowed global names
must not reach module globals through any entry point, while real Runner checkpoints (message-hub history
included) still load."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from multitask_vision.utils.checkpoint import (
    CheckpointError,
    checkpoint_safe_globals,
    load_checkpoint_file,
)
from tests.compression.conftest import run_script

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/configs/tiny_quickstart.py"
MARKER = "MTV_PAYLOAD_RAN"


class _Reduce:
    """Pickles as whatever ``__reduce__`` tuple it is given: a hand-made pickle program."""

    def __init__(self, *reduce) -> None:
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def write_payload(path: Path) -> Path:
    """A checkpoint whose pickle uses only ``builtins.getattr`` (allowed by the old allow-list): it walks
    ``getattr(getattr, '__self__')`` to the builtins module, takes its ``__dict__`` and writes into it (a
    SETITEM on a plain dict is allowed): enough to replace any builtin function the process calls later."""
    builtins_module = _Reduce(getattr, (getattr, "__self__"))
    builtins_dict = _Reduce(getattr, (builtins_module, "__dict__"), None, None, iter([(MARKER, True)]))
    torch.save({"meta": {"payload": builtins_dict}, "state_dict": {}}, path)
    return path


@pytest.fixture
def payload(tmp_path):
    yield write_payload(tmp_path / "evil.pth")
    builtins.__dict__.pop(MARKER, None)


def test_the_payload_runs_when_getattr_is_allowed(payload):
    """The threat is real: with the real ``getattr`` allowed, loading the file rewrites ``builtins``."""
    with torch.serialization.safe_globals([getattr]):
        torch.load(payload, weights_only=True)
    assert builtins.__dict__.pop(MARKER) is True


def test_load_checkpoint_file_refuses_the_payload(payload):
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*evil\.pth: .*'__self__'.*refused"):
        load_checkpoint_file(payload)
    assert MARKER not in builtins.__dict__


def test_mmengine_loading_under_our_allow_list_refuses_the_payload(payload):
    """``Runner.resume`` reads files with mmengine's ``_load_checkpoint`` inside ``checkpoint_safe_globals``."""
    with checkpoint_safe_globals(), pytest.raises(Exception, match="refused"):
        _load_checkpoint(str(payload), map_location="cpu")
    assert MARKER not in builtins.__dict__


def test_library_loaders_refuse_the_payload(payload):
    from torch import nn

    from multitask_vision.compression.pruning import load_pruned
    from multitask_vision.models.builder import build_model
    from multitask_vision.models.checkpoint_init import load_block_weights
    from multitask_vision.utils.checkpoint import load_weights

    with pytest.raises(CheckpointError, match="refused"):
        load_weights(nn.Linear(2, 2), str(payload))
    with pytest.raises(CheckpointError, match="refused"):
        build_model(TINY, payload)
    with pytest.raises(CheckpointError, match="refused"):
        load_pruned(payload)
    with pytest.raises(CheckpointError, match="refused"):
        load_block_weights(nn.ModuleDict({"a": nn.Linear(2, 2)}), str(payload), {"x.": "a."})
    assert MARKER not in builtins.__dict__


def test_a_pickled_statistics_table_cannot_install_another_function(tmp_path):
    """``HistoryBuffer.__setstate__`` writes the pickled ``statistics_methods`` into a class-wide table."""
    buf = HistoryBuffer([1.0, 2.0], [1, 1])
    table = HistoryBuffer._statistics_methods
    table["mean"] = HistoryBuffer.max  # pickled by __getstate__ as the file's statistics table
    try:
        torch.save({"message_hub": buf}, tmp_path / "table.pth")
    finally:
        table["mean"] = HistoryBuffer.mean
    with pytest.raises(CheckpointError, match="statistic 'mean': refused"):
        load_checkpoint_file(tmp_path / "table.pth")
    assert HistoryBuffer._statistics_methods["mean"] is HistoryBuffer.mean


def test_real_history_buffers_load_as_history_buffers(tmp_path):
    buf = HistoryBuffer([1.0, 3.0], [1, 1])
    torch.save(
        {"message_hub": {"log_scalars": {"loss": buf}}, "state_dict": {"w": torch.ones(2)}},
        tmp_path / "ok.pth",
    )
    ck = load_checkpoint_file(tmp_path / "ok.pth")
    loaded = ck["message_hub"]["log_scalars"]["loss"]
    assert type(loaded) is HistoryBuffer
    assert loaded.mean() == 2.0 and loaded.statistics("max") == 3.0
    assert torch.equal(ck["state_dict"]["w"], torch.ones(2))


@pytest.mark.parametrize("bad", ["truncated", "garbage"])
def test_unreadable_files_are_one_line_errors(tmp_path, bad):
    path = tmp_path / "bad.pth"
    if bad == "truncated":
        torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    assert str(info.value).startswith(f"cannot read checkpoint {path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "script,args",
    [
        ("train.py", ["--config", str(TINY), "--work-dir", "wd", "--resume", "evil.pth"]),
        ("train.py", ["--config", str(TINY), "--work-dir", "wd", "--eval-only", "--checkpoint", "evil.pth"]),
        ("visualize.py", ["--config", str(TINY), "--checkpoint", "evil.pth", "--num", "1", "--out", "out"]),
        (
            "deploy.py",
            [
                "--config",
                str(TINY),
                "--checkpoint",
                "evil.pth",
                "--deploy-config",
                str(ROOT / "configs/deploy.py"),
                "--output",
                "out",
            ],
        ),
    ],  # fmt: skip
    ids=["train-resume", "train-eval", "visualize", "deploy"],
)
def test_entry_points_refuse_the_payload(tmp_path, script, args):
    write_payload(tmp_path / "evil.pth")
    proc = run_script(script, args, tmp_path)
    assert proc.returncode != 0
    assert "refused" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
