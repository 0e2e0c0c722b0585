"""What the deploy pipeline takes from training: a short fine-tune of an already built (pruned) model with
mmengine's Runner, and calibration batches from every training source."""

from __future__ import annotations

import copy
import gc
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from torch import Tensor

from multitask_vision.registry import DATASETS


def finetune(cfg: Any, ft: Any, model: Any, work_dir: Path, extra_hooks: list | None = None) -> None:
    """``ft.iters`` iterations of mmengine's ``IterBasedTrainLoop`` on the training config's dataloader,
    optimizer and custom hooks (but ``QATHook``, which only ``extra_hooks`` may add), lr (``ft.lr`` or the
    config's) cosine-decayed to 1%, with the already built (pruned) ``model`` object, no checkpoints.
    ``ft``: the deploy config's :class:`~multitask_vision.compression.config.FinetuneCfg`."""
    from mmengine.runner import Runner

    optim = copy.deepcopy(cfg.optim_wrapper)
    if ft.lr is not None:
        optim.optimizer.lr = ft.lr
    lr = float(optim.optimizer.lr)
    # the weights are trained: the Runner must neither re-initialise them nor re-apply init_from
    model._is_init = True
    model.init_from = []
    hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") != "QATHook"] + list(extra_hooks or [])
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"finetune_{time.strftime('%Y%m%d_%H%M%S')}_{id(model) % 10000}",
        train_dataloader=copy.deepcopy(cfg.train_dataloader),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=ft.iters, val_interval=ft.iters + 1),
        optim_wrapper=optim,
        param_scheduler=[
            dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=ft.iters, eta_min=lr * 0.01)
        ],
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=ft.log_interval),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=None,
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=hooks,
        default_scope=cfg.get("default_scope", "multitask_vision"),
        env_cfg=copy.deepcopy(cfg.get("env_cfg", dict(dist_cfg=dict(backend="gloo")))),
        randomness=copy.deepcopy(cfg.get("randomness", dict(seed=0))),
        log_processor=dict(by_epoch=False, window_size=ft.log_interval),
        launcher="none",
    )
    runner.train()
    del runner  # its persistent dataloader workers end with it, before anything is timed
    gc.collect()
    model.eval()


def calibration_batches(cfg: Any, model: Any, n_samples: int) -> tuple[list[Tensor], dict[str, int]]:
    """Normalised batches from every training source (each batch from one source, as in training), evenly
    spread over each source; returns the batches and the images per source."""
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    sizes = list(getattr(dataset, "source_sizes", [len(dataset)]))
    names = [
        getattr(ds, "source_name", f"source{i}")
        for i, ds in enumerate(getattr(dataset, "datasets", [dataset]))
    ]
    bs = int(cfg.train_dataloader.get("batch_size", 8))
    per = max(2, n_samples // len(sizes))
    batches, counts = [], {}
    offset = 0
    for name, size in zip(names, sizes):
        idx = (offset + np.linspace(0, size - 1, min(per, size)).round().astype(int)).tolist()
        counts[str(name)] = len(idx)
        for i in range(0, len(idx), bs):
            chunk = idx[i : i + bs]
            if len(chunk) < 2:  # PT2E preparation and ORT calibration want >= 2 images per batch
                chunk = idx[max(0, i - 1) : i + 1]
            data = pseudo_collate([dataset[j] for j in chunk])
            with torch.no_grad():
                batches.append(model.data_preprocessor(data, False)["inputs"])
        offset += size
    return batches, counts
