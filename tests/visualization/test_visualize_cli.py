"""visualize.py end to end on the tiny quickstart with random weights: grids per source, and one-line errors
for a checkpoint that does not match the config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/configs/tiny_quickstart.py"


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "visualize.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A freshly built tiny model's weights, saved as mmengine saves them."""
    import multitask_vision
    from multitask_vision.registry import MODELS

    multitask_vision.register_all_modules()
    model = MODELS.build(Config.fromfile(str(TINY)).model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_writes_a_grid_per_sample_and_source(tmp_path, state):
    from multitask_vision.visualization.grid import GAP, HEADER_H, TITLE_H

    torch.save({"meta": {}, "state_dict": state}, tmp_path / "ck.pth")
    # the config positional, as in mmdet's tools (--config works too: the tests below)
    proc = run([str(TINY), "--checkpoint", "ck.pth", "--num", "2", "--out", "out"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    pngs = sorted((tmp_path / "out").rglob("*.png"))
    assert [f"{p.parent.name}/{p.name}" for p in pngs] == [
        "synthetic_nyu/val_000000.png",
        "synthetic_nyu/val_000001.png",
        "synthetic_voc/val_000000.png",
        "synthetic_voc/val_000001.png",
    ]
    # every head predicts on every sample: 3 rows of 256-pixel panels (64-pixel images upscaled)
    panel = 256
    height = TITLE_H + 3 * (HEADER_H + panel) + 2 * 2 * GAP
    for p in pngs:
        img = cv2.imread(str(p))
        assert img.shape[0] == height, p
        assert img.shape[1] >= 3 * panel + 2 * GAP
    # depth rows of NYU samples (labelled for depth) have a 4th panel, the error map
    nyu, voc = cv2.imread(str(pngs[0])), cv2.imread(str(pngs[2]))
    assert nyu.shape[1] > voc.shape[1]


def cli_error(args, capsys) -> str:
    """Run visualize.main in-process (fast: no interpreter start-up) and return its one-line error."""
    import visualize

    with pytest.raises(SystemExit) as e:
        visualize.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_mismatched_checkpoint_is_a_one_line_error_naming_the_keys(tmp_path, state, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = dict(state)
    key = next(k for k in bad if k.startswith("blocks.det_head."))
    bad[key.replace("det_head", "det_haed")] = bad.pop(key)
    torch.save({"meta": {}, "state_dict": bad}, tmp_path / "bad.pth")
    line = cli_error(["--config", str(TINY), "--checkpoint", "bad.pth", "--num", "1", "--out", "out"], capsys)
    assert line.startswith("error: checkpoint bad.pth does not match the config's model")
    assert f"1 missing key (in the model, not in the checkpoint): {key}" in line
    assert (
        f"1 unexpected key (in the checkpoint, not in the model): {key.replace('det_head', 'det_haed')}"
        in line
    )
    assert not (tmp_path / "out").exists()  # nothing drawn


def test_missing_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = cli_error(["--config", str(TINY), "--checkpoint", "nope.pth", "--output", "out"], capsys)
    assert line == "error: checkpoint not found: nope.pth"


def test_timm_backbone_model_draws_every_head(tmp_path, monkeypatch, capsys):
    """The tiny quickstart with a timm backbone (random init) through visualize.py: its checkpoint loads strictly
    into the timm block and every head is drawn for every source."""
    import multitask_vision
    import visualize
    from multitask_vision.registry import MODELS

    config = ROOT / "tests/configs/tiny_timm_quickstart.py"
    multitask_vision.register_all_modules()
    model = MODELS.build(Config.fromfile(str(config)).model)
    assert any(k.startswith("blocks.backbone.stages_") for k in model.state_dict())  # timm's own module names
    torch.save({"meta": {}, "state_dict": model.state_dict()}, tmp_path / "ck.pth")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    visualize.main(["--config", str(config), "--checkpoint", "ck.pth", "--num", "1", "--out", "out"])
    pngs = sorted(f"{p.parent.name}/{p.name}" for p in (tmp_path / "out").rglob("*.png"))
    assert pngs == ["synthetic_nyu/val_000000.png", "synthetic_voc/val_000000.png"]
    assert capsys.readouterr().out.count("wrote out/") == 2
    from multitask_vision.visualization.grid import GAP, HEADER_H, TITLE_H

    img = cv2.imread(str(tmp_path / "out/synthetic_voc/val_000000.png"))
    assert img.shape[0] == TITLE_H + 3 * (HEADER_H + 256) + 2 * 2 * GAP  # three heads, three rows
