"""Hooks of multitask-vision."""

from __future__ import annotations

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
