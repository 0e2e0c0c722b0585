"""Which class a ``type`` in a config names, and the registry scope it must be built in.

A block (or a native head's loss) ``type`` resolves like this:

* ``'mmdet.FCOSHead'`` / ``'mmseg.FCNHead'``: the named package's registry (mmengine splits the scope).
* ``'timm.convnext_atto'``: a model of timm's own registry (``timm.is_model``), built by
  ``timm.create_model`` (there is no class per timm model: it resolves to a :class:`TimmModel`).
* a bare name (``'ResNet'``): our registry first; if it is not ours, the name must exist in exactly one of
  the OpenMMLab packages we bridge, otherwise the error lists every candidate (timm names are always scoped).

A foreign class is built inside its package's default scope (:func:`scope_context`), so that its own sub-builds
(an mmdet head's ``loss_cls=dict(type='FocalLoss')``) find their types in their own registry.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mmengine.registry import DefaultScope, Registry

from multitask_vision.registry import MODELS, SCOPE

# OpenMMLab packages whose blocks may be named in a graph, with the scope their registries use.
FOREIGN_SCOPES = ("mmdet", "mmseg")
# timm: its models are named in timm's own registry, not in an mmengine one.
TIMM_SCOPE = "timm"


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
        scopes = (SCOPE, *FOREIGN_SCOPES, TIMM_SCOPE)
        raise UnknownTypeError(f"unknown scope {scope!r}; blocks may come from {scopes}")
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


@dataclass(frozen=True)
class TimmModel:
    """What ``type='timm.<name>'`` resolves to: timm has one factory for all its models
    (``timm.create_model(name, ...)``), not a class per model, so the name stands where other scopes give a
    class. Calling it builds the model; :class:`~multitask_vision.models.adapters.timm.TimmAdapter` does."""

    name: str

    def __call__(self, **kwargs: Any) -> Any:
        import timm

        return timm.create_model(self.name, **kwargs)


def _timm_model(name: str, kind: str) -> TimmModel:
    import timm

    if kind != "block":
        raise UnknownTypeError(
            f"{kind} type '{TIMM_SCOPE}.{name}': a timm model can only be a block (a backbone)"
        )
    arch, _, tag = name.partition(".")  # a pretrained tag: resnet18.a1_in1k
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(f'{TIMM_SCOPE}.{c}' for c in close)}" if close else ""
        raise UnknownTypeError(
            f"{kind} type '{TIMM_SCOPE}.{name}' is not a timm model (timm.list_models()){hint}"
        )
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = ", ".join(f"{TIMM_SCOPE}.{t}" for t in timm.list_pretrained(f"{arch}.*")) or "none"
        raise UnknownTypeError(
            f"{kind} type '{TIMM_SCOPE}.{name}': timm has no weights tagged {tag!r} ({tags})"
        )
    return TimmModel(name)


def resolve_block_type(type_name: str, kind: str = "block") -> tuple[str, Any]:
    """Return ``(scope, class)`` for a ``type`` from a config (``kind`` names what it is in the errors); for a
    ``timm.<name>`` block the "class" is a :class:`TimmModel`, which builds like one.

    Raises :class:`UnknownTypeError` naming close matches for an unknown name, and every candidate
    scope for a bare name that several packages define.
    """
    if "." in type_name:
        scope, name = type_name.split(".", 1)
        if scope == TIMM_SCOPE:
            return scope, _timm_model(name, kind)
        reg = MODELS if scope == SCOPE else _foreign_model_registry(scope)
        cls = reg.module_dict.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, list(reg.module_dict), n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(f'{scope}.{c}' for c in close)}" if close else ""
            raise UnknownTypeError(f"{kind} type {type_name!r} is not in the {scope} model registry{hint}")
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
        raise UnknownTypeError(f"{kind} type {type_name!r} is ambiguous: write one of {names}")
    pool = [f"{SCOPE}.{n}" for n in MODELS.module_dict] + [
        f"{s}.{n}" for s in FOREIGN_SCOPES for n in _foreign_model_registry(s).module_dict
    ]
    close = difflib.get_close_matches(type_name, [p.split(".", 1)[1] for p in pool], n=5, cutoff=0.6)
    full = [p for p in pool if p.split(".", 1)[1] in close]
    hint = f"; close matches: {', '.join(full)}" if full else ""
    if kind == "block" and _is_timm_model(type_name):
        hint = f"; timm has it: write '{TIMM_SCOPE}.{type_name}'"
    raise UnknownTypeError(f"unknown {kind} type {type_name!r}{hint}")


def _is_timm_model(name: str) -> bool:
    import timm

    return bool(timm.is_model(name))


@contextlib.contextmanager
def scope_context(scope: str) -> Iterator[None]:
    """Make ``scope`` the default scope while a class of that scope is built (nothing to do for ours, nor for
    timm, which builds nothing through mmengine's registries)."""
    if scope in (SCOPE, TIMM_SCOPE):
        yield
        return
    with DefaultScope.overwrite_default_scope(scope):
        yield
