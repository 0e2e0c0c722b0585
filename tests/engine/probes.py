"""Test-only hooks run inside train.py: the main process's resident memory over training, and a weight turned to
nan at a chosen iteration (what a diverging optimizer step does)."""

from __future__ import annotations

import json
import os

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def resident_mb() -> float:
    """This process's resident set size (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@HOOKS.register_module()
class RSSProbeHook(Hook):
    """Records ``(iteration, resident MB)`` every ``interval`` iterations into ``<work_dir>/rss.json``."""

    def __init__(self, interval: int = 10) -> None:
        self.interval = interval
        self.samples: list[tuple[int, float]] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.interval == 0:
            self.samples.append((runner.iter + 1, resident_mb()))

    def after_train(self, runner) -> None:
        with open(os.path.join(runner.work_dir, "rss.json"), "w") as f:
            json.dump(self.samples, f)


@HOOKS.register_module()
class NaNWeightHook(Hook):
    """After iteration ``at_iter``, one weight of ``block`` becomes nan."""

    priority = "LOWEST"

    def __init__(self, at_iter: int, block: str = "backbone") -> None:
        self.at_iter = at_iter
        self.block = block

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at_iter:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            with torch.no_grad():
                next(model.blocks[self.block].parameters()).view(-1)[0] = float("nan")
