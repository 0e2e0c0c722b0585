"""What the entry points share: loading a config with overrides, distributed set-up, one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the scripts)

# Errors a user causes with a config or a file: printed as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, TypeError, OSError)


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None) -> Config:
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = Config.fromfile(path)
    if cfg_options:
        lengths = _schedule_lengths(cfg)
        cfg.merge_from_dict(cfg_options)
        _follow_schedule_length(cfg, lengths)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(path).stem)
    return cfg


def _schedule_lengths(cfg: Config) -> dict[bool, int]:
    """The training length, keyed by ``by_epoch``: {False: max_iters} or {True: max_epochs}."""
    loop = cfg.get("train_cfg") or {}
    return {
        by_epoch: loop[key] for by_epoch, key in ((False, "max_iters"), (True, "max_epochs")) if key in loop
    }


def _follow_schedule_length(cfg: Config, before: dict[bool, int]) -> None:
    """When ``--cfg-options`` changes ``train_cfg.max_iters`` (or ``max_epochs``), the parameter schedulers
    that ended with training (``end`` equal to the old length) end with the new one: a config can only
    write ``end=max_iters`` as a number, so without this a shortened run would stop mid-decay and a
    lengthened one would train at the final learning rate for the rest. Each change is logged."""
    from mmengine.logging import print_log

    after = _schedule_lengths(cfg)
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, sched in enumerate(schedulers):
        by_epoch = bool(sched.get("by_epoch", True))
        old, new = before.get(by_epoch), after.get(by_epoch)
        if old is None or new is None or old == new or sched.get("end") != old:
            continue
        if sched.get("begin", 0) >= new:
            unit = "epoch" if by_epoch else "iteration"
            print_log(
                f"param_scheduler[{i}] ({sched.get('type')}) begins at {sched.get('begin')}, at or after the "
                f"last {unit} ({new}): it will never act",
                logger="current",
                level=logging.WARNING,
            )
            continue
        sched["end"] = new
        print_log(
            f"param_scheduler[{i}] ({sched.get('type')}).end follows the training length: {old} -> {new}",
            logger="current",
        )


def setup_distributed(launcher: str, cfg: Config) -> None:
    """On machines without CUDA, start a gloo process group ourselves (mmengine 0.10.7's ``init_dist``
    calls ``torch.cuda.set_device``) and make DDP wrap a CPU model (``device_ids=None``)."""
    cfg.launcher = launcher
    if launcher == "none" or torch.cuda.is_available():
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel"))
    wrapper["device_ids"] = None
    cfg.model_wrapper_cfg = wrapper


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]):
    """Inside: a config or input error (``kinds``, default :data:`USER_ERRORS`) becomes ``error: <reason>`` on
    stderr and exit code 2 (no traceback; ``MTV_DEBUG=1`` shows it). Wrap set-up only, or name narrow
    ``kinds``, so that a bug during training keeps its traceback."""
    caught: tuple[type[BaseException], ...] = kinds or USER_ERRORS
    try:
        yield
    except caught as e:
        if os.environ.get("MTV_DEBUG"):
            raise
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg.splitlines()[0] if msg else type(e).__name__}", file=sys.stderr)
        sys.exit(2)
