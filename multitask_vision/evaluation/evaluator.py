"""``MultiTaskEvaluator``: mmengine's Evaluator plus the multi-task score Δm.

Δm (Maninis et al. 2019; Vandenhende et al. 2021) is the mean relative change of every chosen metric
against a single-task baseline, signed so that positive is better::

    Δm = 100 / K * Σ_k (-1)^{l_k} (M_k - B_k) / B_k,   l_k = 1 if lower is better for metric k

Configure it as the Runner's evaluator::

    val_evaluator = dict(type='MultiTaskEvaluator', metrics=[...TaskMetric...],
                         baselines={'detection/pascal_voc/mAP': 0.70, 'depth/abs_rel': 0.05})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmengine.evaluator import Evaluator

from multitask_vision.evaluation.task_metric import TaskMetric
from multitask_vision.registry import EVALUATOR
from multitask_vision.utils.errors import UserError

#: metric names (last path component) where lower is better
LOWER_IS_BETTER = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae", "rel"})


def is_lower_better(key: str, lower_is_better: Sequence[str] = ()) -> bool:
    """Whether lower is better for metric ``key`` (a full name): named in ``lower_is_better`` or a known error."""
    return key in lower_is_better or key.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def delta_m(
    results: Mapping[str, float], baselines: Mapping[str, float], lower_is_better: Sequence[str] = ()
) -> float:
    """Δm in percent of ``results`` against ``baselines`` (keys are full metric names)."""
    if not baselines:
        raise ValueError("delta_m needs at least one baseline metric")
    terms = []
    for key, base in baselines.items():
        if key not in results:
            raise KeyError(f"Δm baseline {key!r} is not among the metrics: {sorted(results)}")
        if base == 0:
            raise ValueError(f"Δm baseline {key!r} is 0: a relative change is undefined")
        sign = -1.0 if is_lower_better(key, lower_is_better) else 1.0
        terms.append(sign * (float(results[key]) - float(base)) / float(base))
    return 100.0 * sum(terms) / len(terms)


@EVALUATOR.register_module()
class MultiTaskEvaluator(Evaluator):
    """Evaluator whose results also carry ``multitask/delta_m`` when ``baselines`` are given.

    Args:
        metrics: metric configs (typically one ``TaskMetric`` per task).
        baselines: ``{metric name: single-task baseline value}``.
        lower_is_better: metric names where lower is better, beyond the known depth errors.
    """

    def __init__(
        self,
        metrics: dict | Sequence[dict],
        baselines: Mapping[str, float] | None = None,
        lower_is_better: Sequence[str] = (),
    ) -> None:
        super().__init__(metrics)
        self.baselines = dict(baselines or {})
        self.lower_is_better = tuple(lower_is_better)

    def evaluate(self, size: int) -> dict:
        results = super().evaluate(size)
        if self.baselines:
            results["multitask/delta_m"] = delta_m(results, self.baselines, self.lower_is_better)
        return results


def primary_metrics(evaluator: Evaluator) -> list[tuple[str, bool]]:
    """One headline metric per task, ``[(full metric name, lower is better)]``: the keys of the Δm baselines
    (one per task) when the evaluator has them, else each ``TaskMetric``'s ``primary``. Empty when neither is
    configured. What shows one number per task (the deploy report's table) reads it here."""
    extra = tuple(getattr(evaluator, "lower_is_better", ()))
    keys = list(getattr(evaluator, "baselines", None) or [])
    if not keys:
        keys = [
            f"{m.prefix}/{m.primary}" for m in evaluator.metrics if isinstance(m, TaskMetric) and m.primary
        ]
    return [(k, is_lower_better(k, extra)) for k in keys]


def check_model_selection(cfg: Mapping) -> None:
    """Check, before training, that ``default_hooks.checkpoint.save_best`` names metrics the validation gives:
    ``multitask/delta_m`` needs ``val_evaluator.baselines``, a ``<task>/...`` key a ``TaskMetric`` of that task.
    Otherwise mmengine's ``CheckpointHook`` fails with a bare ``KeyError`` after the first validation, with the
    training time spent. Raises :class:`~multitask_vision.utils.errors.UserError` naming the key."""
    hook = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    save_best = hook.get("save_best")
    evaluator = cfg.get("val_evaluator")
    if not save_best or save_best == "auto" or not isinstance(evaluator, Mapping):
        return
    metrics = evaluator.get("metrics", [])
    tasks = {m.get("task") for m in ([metrics] if isinstance(metrics, Mapping) else metrics)}
    for key in [save_best] if isinstance(save_best, str) else save_best:
        if key == "multitask/delta_m" and not evaluator.get("baselines"):
            raise UserError(
                "default_hooks.checkpoint.save_best='multitask/delta_m' but val_evaluator has no baselines "
                "(Δm needs each task's single-task baseline): give val_evaluator.baselines, or save_best a "
                "task's metric (e.g. 'segmentation/mIoU')"
            )
        if key != "multitask/delta_m" and key.split("/")[0] not in tasks:
            raise UserError(
                f"default_hooks.checkpoint.save_best={key!r}: no validation metric of task "
                f"{key.split('/')[0]!r} (val_evaluator's tasks: {sorted(t for t in tasks if t)})"
            )
