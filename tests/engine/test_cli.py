"""The entry points' shared command-line habits (OpenMMLab's): the config positional or --config, --out with
--output as its alias, mmengine's launchers, and --help listing each script's examples."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from multitask_vision.engine.launch import (
    LAUNCHERS,
    add_config_argument,
    add_out_argument,
    parse_cli,
    setup_distributed,
)

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_argument(p)
    add_out_argument(p, "output folder")
    p.add_argument("--launcher", choices=LAUNCHERS, default="none")
    return p


@pytest.mark.parametrize(
    "argv",
    [
        ["configs/x.py", "--out", "o"],
        ["--config", "configs/x.py", "--output", "o"],
        ["--out", "o", "configs/x.py"],
        ["configs/x.py", "--config", "configs/x.py", "--out", "o"],
    ],
)
def test_config_positional_or_option_and_out_or_output(argv):
    args = parse_cli(parser(), argv)
    assert args.config == "configs/x.py" and args.out == "o"
    assert not hasattr(args, "config_option")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the config file is required (first argument, or --config)"),
        (["a.py", "--config", "b.py"], "two configs given: a.py and --config b.py"),
    ],
)
def test_no_config_or_two_configs_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_cli(parser(), argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_launchers_are_mmengines():
    assert LAUNCHERS == ("none", "pytorch", "slurm", "mpi")
    for launcher in LAUNCHERS:
        assert parse_cli(parser(), ["c.py", "--launcher", launcher]).launcher == launcher
    with pytest.raises(SystemExit):
        parse_cli(parser(), ["c.py", "--launcher", "deepspeed"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROBE = (
    "import torch.distributed as d; from mmengine.config import Config; "
    "from multitask_vision.engine.launch import setup_distributed; cfg = Config(); "
    "setup_distributed({launcher!r}, cfg); "
    "print(d.get_backend(), d.get_rank(), d.get_world_size(), cfg.launcher, cfg.model_wrapper_cfg['device_ids'])"
)


@pytest.mark.parametrize(
    "launcher, env",
    [
        ("mpi", dict(OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_SIZE="1", OMPI_COMM_WORLD_LOCAL_RANK="0")),
        ("slurm", dict(SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_LOCALID="0", SLURM_NODELIST="localhost")),
    ],
)
def test_slurm_and_mpi_start_a_gloo_group_on_cpu(tmp_path, launcher, env):
    """Without CUDA, a Slurm or Open MPI launch is turned into torch's env:// variables (as mmengine's
    init_dist does for CUDA) and a gloo process group; here with one process."""
    full = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", MASTER_ADDR="127.0.0.1")
    full.update(env, MASTER_PORT=str(_free_port()))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        full.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(launcher=launcher)],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["gloo", "0", "1", launcher, "None"]


def test_slurm_launcher_outside_slurm_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for key in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(
        ValueError, match=r"--launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID not set"
    ):
        setup_distributed("slurm", Config())


@pytest.mark.parametrize("script", ["train.py", "visualize.py", "deploy.py", "infer.py"])
def test_help_lists_the_examples(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "examples:" in out and f"uv run {script} configs/" in out  # the config positional, as in mmdet
    assert "--config CONFIG" in out
    if script != "train.py":
        assert "--out DIR, --output DIR" in out
    else:
        assert "{none,pytorch,slurm,mpi}" in out and "--nnodes=2" in out
