"""Shared fixtures of the deployment tests: one tiny synthetic dataset and checkpoint for the whole session."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_train.py"
TINY_QAT = HERE / "tiny_qat.py"
TINY_MMLAB = HERE / "tiny_mmlab.py"
TINY_TIMM = HERE / "tiny_timm.py"

logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def run_script(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run an entry script (train.py, deploy.py) end to end in a fresh interpreter, one thread."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def build(cfg_path: Path = TINY, seed: int = 0):
    """The tiny model of a config, eval mode, seeded init."""
    from mmengine.config import Config

    import multitask_vision
    from multitask_vision.registry import MODELS

    multitask_vision.register_all_modules()
    torch.manual_seed(seed)
    return MODELS.build(copy.deepcopy(Config.fromfile(str(cfg_path)).model)).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine is shared by two cores: a 2-thread OpenMP pool stalls under load (100x seen)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A directory with the tiny synthetic data (generated once) and a Runner-style checkpoint of the tiny
    model: a seeded initialisation, not trained (the tests check the pipeline, not accuracy)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from multitask_vision.registry import DATASETS

    ws = tmp_path_factory.mktemp("deploy")
    old_cwd, old_threads = os.getcwd(), torch.get_num_threads()
    os.chdir(ws)
    torch.set_num_threads(1)
    try:
        cfg = Config.fromfile(str(TINY))
        init_default_scope("multitask_vision")
        DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
        DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
        torch.save(dict(meta=dict(), state_dict=build(TINY).state_dict()), ws / "tiny.pth")
    finally:
        os.chdir(old_cwd)
    yield ws
    torch.set_num_threads(old_threads)


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    return workspace
