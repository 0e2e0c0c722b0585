"""Registries of multitask-vision: children of mmengine's roots, scope ``multitask_vision``.

A ``type`` written in a config resolves like this:

* ``'mmdet.FCOSHead'`` / ``'mmseg.FCNHead'``: the named package's registry (mmengine splits the scope).
* a bare name (``'ResNet'``): our registry first; if it is not ours, the name must exist in exactly one of
  the OpenMMLab packages we bridge, otherwise the error lists every candidate (see :func:`resolve_block_type`).
"""

from __future__ import annotations

import difflib

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

SCOPE = "multitask_vision"

MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE, locations=[f"{SCOPE}.models"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE, locations=[f"{SCOPE}.datasets"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=[f"{SCOPE}.datasets"])
DATA_SAMPLERS = Registry(
    "data sampler", parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE, locations=[f"{SCOPE}.datasets"]
)
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=[f"{SCOPE}.evaluation"])
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope=SCOPE, locations=[f"{SCOPE}.evaluation"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=SCOPE, locations=[f"{SCOPE}.engine"])
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope=SCOPE, locations=[f"{SCOPE}.engine"])
# How a task's predictions and ground truth are drawn (visualize.py, MultiTaskVisualizationHook): one drawer
# per kind of data-sample field (pred_instances, pred_sem_seg, pred_depth_map, ...).
DRAWERS = Registry("task drawer", scope=SCOPE, locations=[f"{SCOPE}.visualization"])
# How a block is called and how a head's loss/predictions are computed: one adapter per protocol.
ADAPTERS = Registry("adapter", scope=SCOPE, locations=[f"{SCOPE}.models.adapters"])
# Deployment steps (pruning, quantization, export): registered objects with typed keyword arguments.
COMPRESSION = Registry("compression step", scope=SCOPE, locations=[f"{SCOPE}.compression"])

# OpenMMLab packages whose blocks may be named in a graph, with the scope their registries use.
FOREIGN_SCOPES = ("mmdet", "mmseg")


class UnknownTypeError(KeyError):
    """A block type that no registry knows, or that several know (ambiguous)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _foreign_model_registry(scope: str) -> Registry:
    if scope == "mmdet":
        from mmdet.registry import MODELS as reg
    elif scope == "mmseg":
        from mmseg.registry import MODELS as reg
    else:
        raise UnknownTypeError(f"unknown scope {scope!r}; blocks may come from {(SCOPE,) + FOREIGN_SCOPES}")
    register_openmmlab_modules()
    return reg


_REGISTERED_FOREIGN = False


def register_openmmlab_modules() -> None:
    """Import mmdet's and mmseg's modules into their registries without touching the default scope."""
    global _REGISTERED_FOREIGN
    if _REGISTERED_FOREIGN:
        return
    from mmdet.utils import register_all_modules as mmdet_register
    from mmseg.utils import register_all_modules as mmseg_register

    mmdet_register(init_default_scope=False)
    mmseg_register(init_default_scope=False)
    _REGISTERED_FOREIGN = True


def resolve_block_type(type_name: str) -> tuple[str, type]:
    """Return ``(scope, class)`` for a block ``type`` from a config.

    Raises :class:`UnknownTypeError` naming close matches for an unknown name, and every candidate
    scope for a bare name that several packages define.
    """
    import multitask_vision.models  # noqa: F401  (fills MODELS)

    if "." in type_name:
        scope, name = type_name.split(".", 1)
        reg = MODELS if scope == SCOPE else _foreign_model_registry(scope)
        cls = reg.module_dict.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, list(reg.module_dict), n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(f'{scope}.{c}' for c in close)}" if close else ""
            raise UnknownTypeError(f"block type {type_name!r} is not in the {scope} model registry{hint}")
        return scope, cls
    if type_name in MODELS.module_dict:
        return SCOPE, MODELS.module_dict[type_name]
    candidates = []
    for scope in FOREIGN_SCOPES:
        reg = _foreign_model_registry(scope)
        if type_name in reg.module_dict:
            candidates.append((scope, reg.module_dict[type_name]))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(f"'{s}.{type_name}'" for s, _ in candidates)
        raise UnknownTypeError(f"block type {type_name!r} is ambiguous: write one of {names}")
    pool = [f"{SCOPE}.{n}" for n in MODELS.module_dict] + [
        f"{s}.{n}" for s in FOREIGN_SCOPES for n in _foreign_model_registry(s).module_dict
    ]
    close = difflib.get_close_matches(type_name, [p.split(".", 1)[1] for p in pool], n=5, cutoff=0.6)
    full = [p for p in pool if p.split(".", 1)[1] in close]
    hint = f"; close matches: {', '.join(full)}" if full else ""
    raise UnknownTypeError(f"unknown block type {type_name!r}{hint}")
