"""Which checkpoint ``train.py --resume`` continues from."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mmengine.logging import print_log

from multitask_vision.utils.checkpoint import CheckpointError, recorded_checkpoint, verify_checkpoint_file
from multitask_vision.utils.errors import UserError

_STEP = re.compile(r"^(?:iter|epoch)_(\d+)\.pth$")


def resume_checkpoint(work_dir: str | Path) -> str:
    """The checkpoint ``--resume`` alone continues from: the one ``<work_dir>/last_checkpoint`` names (what
    mmengine's ``CheckpointHook`` wrote last), else, when that file is missing, truncated or corrupt, the newest
    whole ``iter_N.pth`` / ``epoch_N.pth`` of the work dir, with a warning naming what was passed over.

    Raises :class:`UserError` when there is nothing to resume (a mistyped work dir must not silently start a
    new run) and :class:`CheckpointError` when every checkpoint there is damaged."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise UserError(
            f"--resume: work dir {work_dir} does not exist (nothing to resume; drop --resume to start)"
        )
    recorded = recorded_checkpoint(work_dir)
    candidates: list[Path] = [recorded] if recorded is not None else []
    steps = sorted(
        (int(m.group(1)), p) for p in work_dir.glob("*.pth") if (m := _STEP.match(p.name)) is not None
    )
    candidates += [p for _, p in reversed(steps) if p not in candidates]
    if not candidates:
        raise UserError(
            f"--resume: no checkpoint in work dir {work_dir} (no last_checkpoint file, no iter_*.pth / "
            "epoch_*.pth): check --work-dir, or drop --resume to start a new run"
        )
    passed_over: list[str] = []
    for path in candidates:
        try:
            verify_checkpoint_file(path)
        except CheckpointError as e:
            passed_over.append(str(e))
            continue
        if passed_over:
            print_log(
                f"--resume: resuming from {path}, the newest whole checkpoint; passed over: "
                + "; ".join(passed_over),
                logger="current",
                level=logging.WARNING,
            )
        return str(path)
    raise CheckpointError(f"--resume: no whole checkpoint in {work_dir}: " + "; ".join(passed_over))
