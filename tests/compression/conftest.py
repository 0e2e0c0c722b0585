"""Shared fixtures of the deployment tests: one tiny synthetic dataset and checkpoint for the whole session."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def tiny_data_in(ws: Path, splits: tuple[str, ...] = ("train", "val")):
    """Inside: ``ws`` as the working directory with the tiny config's synthetic data of ``splits`` generated there
    and one torch thread (both restored after)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from multitask_vision.registry import DATASETS

    old_cwd, old_threads = os.getcwd(), torch.get_num_threads()
    os.chdir(ws)
    torch.set_num_threads(1)
    try:
        cfg = Config.fromfile(str(TINY))
        init_default_scope("multitask_vision")
        for split in splits:
            DATASETS.build(copy.deepcopy(cfg[f"{split}_dataloader"].dataset))
        yield
    finally:
        os.chdir(old_cwd)
        torch.set_num_threads(old_threads)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A directory with the tiny synthetic data (generated once) and a Runner-style checkpoint of the tiny
    model: a seeded initialisation, not trained (the tests check the pipeline, not accuracy)."""
    ws = tmp_path_factory.mktemp("deploy")
    with tiny_data_in(ws):
        torch.save(dict(meta=dict(), state_dict=build(TINY).state_dict()), ws / "tiny.pth")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ws
    torch.set_num_threads(old_threads)


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    return workspace
