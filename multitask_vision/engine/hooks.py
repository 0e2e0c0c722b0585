"""Hooks of multitask-vision."""

from __future__ import annotations

import json
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from multitask_vision.registry import HOOKS


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


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
