"""Hooks of multitask-vision."""

from __future__ import annotations

import json
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from multitask_vision.registry import HOOKS
from multitask_vision.utils.checkpoint import LATEST_LINK, link_latest


@HOOKS.register_module()
class TaskCoverageHook(Hook):
    """Before training, compare the tasks the heads predict with the tasks the training data labels.

    A task the data labels but no head predicts is an error (``strict=True``, default) or a warning; a head
    whose task no source labels is a warning (it would never be trained).
    """

    priority = "VERY_HIGH"

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        dataset = runner.train_dataloader.dataset
        labelled = list(getattr(dataset, "tasks", ()) or ())
        if not labelled:
            return
        model.graph.check_tasks(labelled, where="the training sources")
        orphan = sorted(set(labelled) - set(model.tasks))
        if orphan:
            msg = f"the training data labels tasks no head predicts: {orphan} (heads predict {model.tasks})"
            if self.strict:
                raise ValueError(msg + "; add heads, or drop the tasks from the sources' tasks=")
            runner.logger.warning(msg)


@HOOKS.register_module()
class MetricsJSONHook(Hook):
    """Write validation metrics to ``<work_dir>/val_metrics.json`` (one entry per validation, with the
    iteration and epoch) and test metrics to ``<work_dir>/test_metrics.json``. Main process only."""

    priority = "LOW"

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        self._write(runner, "val_metrics.json", metrics, append=True)

    def after_test_epoch(self, runner, metrics: dict | None = None) -> None:
        self._write(runner, "test_metrics.json", metrics, append=False)

    @staticmethod
    def _write(runner, name: str, metrics: dict | None, append: bool) -> None:
        if not metrics or not is_main_process():
            return
        path = Path(runner.work_dir) / name
        entry = dict(iter=runner.iter, epoch=runner.epoch, metrics={k: _plain(v) for k, v in metrics.items()})
        history = json.loads(path.read_text()) if append and path.is_file() else []
        path.write_text(json.dumps(history + [entry] if append else entry, indent=2))


@HOOKS.register_module()
class LatestCheckpointHook(Hook):
    """Keep ``<work_dir>/latest.pth`` pointing at the last checkpoint ``CheckpointHook`` saved (mmengine's
    ``last_checkpoint`` record names it), as mmcv's runner did, so ``--checkpoint work_dir/latest.pth`` works.

    Runs after ``CheckpointHook`` (priority ``LOWEST``), main process only; the link is replaced atomically
    (:func:`~multitask_vision.utils.checkpoint.link_latest`: a symlink, else a hard link, else a copy).
    In the runtime config: ``default_hooks = dict(latest_checkpoint=dict(type='LatestCheckpointHook'))``.

    Args:
        filename: the link's name in the work dir.
    """

    priority = "LOWEST"

    def __init__(self, filename: str = LATEST_LINK) -> None:
        if not isinstance(filename, str) or not filename or "/" in filename:
            raise ValueError(f"LatestCheckpointHook: filename must be a file name, got {filename!r}")
        self.filename = filename
        self._linked: str | None = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._update(runner)

    def after_train_epoch(self, runner) -> None:
        self._update(runner)

    def _update(self, runner) -> None:
        last = runner.message_hub.get_info("last_ckpt")
        if not last or last == self._linked or not is_main_process():
            return
        if not Path(last).is_file():  # a remote out_dir, or a resumed run's record from elsewhere
            runner.logger.warning(
                f"LatestCheckpointHook: the last checkpoint {last} is not a file here; {self.filename} not updated"
            )
        else:
            kind = link_latest(last, Path(runner.work_dir) / self.filename)
            runner.logger.info(f"{self.filename} -> {last} ({kind})")
        self._linked = last


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
