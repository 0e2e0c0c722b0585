"""A test-only hook: each rank records its parameters' checksum and the samples it trained on."""

from __future__ import annotations

import json
import os

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DDPProbeHook(Hook):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.seen += [str(s.metainfo["img_path"]) for s in data_batch["data_samples"]]

    def after_train(self, runner) -> None:
        params = torch.cat([p.detach().flatten() for p in runner.model.parameters()])
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        out = dict(
            world_size=torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
            checksum=float(params.double().sum()),
            seen=self.seen,
        )
        with open(os.path.join(runner.work_dir, f"probe_rank{rank}.json"), "w") as f:
            json.dump(out, f)
