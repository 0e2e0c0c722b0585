"""load_config: --cfg-options that change the training length carry the schedulers that ended with it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim.scheduler import CosineAnnealingLR
from torch import nn, optim

from multitask_vision.engine.launch import load_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs/quickstart.py")
LENGTH = Config.fromfile(QUICKSTART).train_cfg.max_iters  # where its cosine decay ends


@pytest.fixture
def log_lines(monkeypatch):
    lines: list[tuple[int, str]] = []

    class Grab(logging.Handler):
        def emit(self, record):
            lines.append((record.levelno, record.getMessage()))

    logger = MMLogger.get_current_instance()
    handler = Grab()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def test_shortened_run_ends_its_cosine_decay(log_lines):
    cfg = load_config(QUICKSTART, {"train_cfg.max_iters": 200})
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 100)  # the warm-up did not end with training: unchanged
    assert (cosine.begin, cosine.end) == (100, 200)
    assert any(f"end follows the training length: {LENGTH} -> 200" in m for _, m in log_lines)

    def lr_after_training(end):  # the cosine scheduler mmengine builds, stepped once per iteration
        opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
        sched = CosineAnnealingLR(opt, **{**{k: v for k, v in cosine.items() if k != "type"}, "end": end})
        for _ in range(200):
            sched.step()
        return opt.param_groups[0]["lr"]

    assert lr_after_training(cosine.end) < 1e-3  # decayed to ≈eta_min by the new last iteration
    assert lr_after_training(LENGTH) > 0.9  # what the run would have done without following


def test_unchanged_length_and_no_options_leave_the_schedule_alone():
    base = Config.fromfile(QUICKSTART).param_scheduler
    assert load_config(QUICKSTART).param_scheduler == base
    assert load_config(QUICKSTART, {"train_cfg.max_iters": LENGTH}).param_scheduler == base
    assert load_config(QUICKSTART, {"optim_wrapper.optimizer.lr": 1e-3}).param_scheduler == base


def test_scheduler_beginning_after_the_new_end_is_kept_and_warned(log_lines):
    cfg = load_config(QUICKSTART, {"train_cfg.max_iters": 50})
    assert cfg.param_scheduler[1].end == LENGTH  # not end < begin, which mmengine would reject
    warnings = [m for level, m in log_lines if level == logging.WARNING]
    assert any(
        "param_scheduler[1] (CosineAnnealingLR) begins at 100" in m and "never act" in m for m in warnings
    )


def test_epoch_based_schedulers_follow_max_epochs(tmp_path):
    cfg_file = tmp_path / "epochs.py"
    cfg_file.write_text(
        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12)\n"
        "param_scheduler = [\n"
        "    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=12),\n"  # iterations: untouched
        "    dict(type='MultiStepLR', begin=0, end=12, milestones=[8, 11]),\n"  # by_epoch defaults to True
        "]\n"
    )
    cfg = load_config(str(cfg_file), {"train_cfg.max_epochs": 24})
    assert cfg.param_scheduler[0].end == 12
    assert cfg.param_scheduler[1].end == 24
