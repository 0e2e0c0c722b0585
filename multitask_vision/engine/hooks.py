"""Hooks of multitask-vision."""

from __future__ import annotations

import json
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from multitask_vision.models.step_guard import describe, nonfinite_tensors, walk_tensors
from multitask_vision.registry import HOOKS
from multitask_vision.utils.checkpoint import LATEST_LINK, link_latest
from multitask_vision.utils.errors import TrainingDivergedError, UserError


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
                raise UserError(msg + "; add heads, or drop the tasks from the sources' tasks=")
            runner.logger.warning(msg)


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stop a diverging run, and never save or validate a model whose numbers are not finite.

    ``MultiTaskModel.train_step`` skips (and logs) every step whose loss or gradient is nan or inf, leaving the
    model as it was (:mod:`~multitask_vision.models.step_guard`). This hook:

    * counts skipped steps; after ``max_skipped_steps`` in a row it stops training with
      :class:`~multitask_vision.utils.errors.TrainingDivergedError` naming the tasks, the iteration and the
      last good checkpoint (train.py prints it as one line and exits with code 3);
    * before ``CheckpointHook`` saves (it runs first) and before every validation or test, checks that the
      weights, buffers and (when saving) optimizer state are finite, and stops otherwise. ``CheckpointHook``
      deletes its oldest checkpoint (``max_keep_ckpts``) *before* it saves the new one, so the check has to come
      first for a good checkpoint never to be rotated away for a bad one;
    * refuses any checkpoint with a non-finite value in ``before_save_checkpoint``, whoever saves it;
    * warns (once per task) when a task's weight, as the task weighting logs it (``<task>.weight``), falls below
      ``min_task_weight``: the run goes on, but that task has stopped learning. Learned weights fail this way
      instead of diverging: with ``UncertaintyWeighting`` a learning rate far too high drives every
      log-variance up and every weight to 0 while the loss stays finite.
    """

    priority = "ABOVE_NORMAL"  # before LoggerHook (BELOW_NORMAL) and CheckpointHook (VERY_LOW)

    def __init__(self, max_skipped_steps: int = 3, min_task_weight: float = 1e-3) -> None:
        if not isinstance(max_skipped_steps, int) or max_skipped_steps < 1:
            raise UserError(
                f"NonFiniteGuardHook.max_skipped_steps must be an int >= 1, got {max_skipped_steps!r}"
            )
        if not isinstance(min_task_weight, int | float) or min_task_weight < 0:
            raise UserError(f"NonFiniteGuardHook.min_task_weight must be >= 0, got {min_task_weight!r}")
        self.max_skipped_steps = max_skipped_steps
        self.min_task_weight = float(min_task_weight)
        self.skipped = 0
        self.collapsed: set[str] = set()

    def before_train(self, runner) -> None:
        self.skipped = 0
        self.collapsed = set()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        fault = getattr(_unwrap(runner.model), "last_step_fault", None)
        self.skipped = 0 if fault is None else self.skipped + 1
        if self.skipped >= self.max_skipped_steps:
            raise TrainingDivergedError(
                f"training stopped: {self.skipped} steps in a row skipped for non-finite numbers, the last at "
                f"{fault}; last good checkpoint: {_last_checkpoint(runner)} (resume from it with a lower "
                "learning rate, or look for bad data in that task)"
            )
        if any(_saves_after_iter(h, runner) for h in runner.hooks if isinstance(h, CheckpointHook)):
            self._check(runner, f"saving the checkpoint of iteration {runner.iter + 1}", optimizer=True)
        if fault is None and isinstance(outputs, dict):
            self._warn_collapsed_weights(runner, outputs)

    def _warn_collapsed_weights(self, runner, log_vars: dict) -> None:
        for key, value in log_vars.items():
            task, sep, name = key.rpartition(".")
            if not sep or name != "weight" or task in self.collapsed:
                continue
            weight = float(value)
            if weight < self.min_task_weight:
                self.collapsed.add(task)
                runner.logger.warning(
                    f"task '{task}': its weight fell to {weight:.3g} at iteration {runner.iter + 1} "
                    f"(NonFiniteGuardHook.min_task_weight={self.min_task_weight:g}): this task has stopped "
                    "learning. Learned weights (UncertaintyWeighting) go to 0 when the learning rate is far too "
                    "high; lower optim_wrapper.optimizer.lr"
                )

    def after_train_epoch(self, runner) -> None:
        self._check(runner, f"the end of epoch {runner.epoch + 1}", optimizer=True)

    def before_val_epoch(self, runner) -> None:
        self._check(runner, "validation")

    def before_test_epoch(self, runner) -> None:  # e.g. train.py --eval-only of a checkpoint
        self._check(runner, "testing", training=False)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _unwrap(runner.model)
        kept = _kept_finite(model)
        named = [(n, t) for n, t in walk_tensors(checkpoint.get("state_dict", {})) if n in kept]
        named += walk_tensors({k: v for k, v in checkpoint.items() if k != "state_dict"})
        bad = nonfinite_tensors(named)
        if bad:
            raise TrainingDivergedError(
                f"refusing to save a checkpoint with non-finite values ({describe(bad)}); last good checkpoint: "
                f"{_last_checkpoint(runner)}"
            )

    def _check(self, runner, when: str, optimizer: bool = False, training: bool = True) -> None:
        model = _unwrap(runner.model)
        kept = _kept_finite(model)
        named = [(n, t) for n, t in walk_tensors(model.state_dict()) if n in kept]
        if optimizer:  # training: the optim wrapper is built
            named += walk_tensors(runner.optim_wrapper.state_dict(), "optimizer")
        bad = nonfinite_tensors(named)
        if bad:
            last = f"; last good checkpoint: {_last_checkpoint(runner)}" if training else ""
            raise TrainingDivergedError(
                f"non-finite values in the model before {when} ({describe(bad)}){last}"
            )


def _kept_finite(model) -> set[str]:
    """State-dict names training must keep finite: the parameters and normalisation statistics. Other buffers
    may hold +-inf by design (a quantization observer before it has seen data, a -inf attention mask); the
    step guard still catches a forward pass that makes one of them non-finite."""
    names = {name for name, _ in model.named_parameters()}
    return names | {
        n for n, _ in model.named_buffers() if n.rsplit(".", 1)[-1] in ("running_mean", "running_var")
    }


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _saves_after_iter(hook: CheckpointHook, runner) -> bool:
    """Whether ``CheckpointHook.after_train_iter`` saves at this iteration (its own condition)."""
    if hook.by_epoch:
        return False
    return hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or bool(
        hook.save_last and hook.is_last_train_iter(runner)
    )


def _last_checkpoint(runner) -> str:
    """The checkpoint ``CheckpointHook`` saved last (``<work_dir>/last_checkpoint``), if it is still there."""
    pointer = Path(runner.work_dir) / "last_checkpoint"
    path = pointer.read_text().strip() if pointer.is_file() else ""
    return path if path and Path(path).is_file() else "none saved yet"


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
