"""Which class a ``type`` in a config names, and the registry scope it must be built in.

A block (or a native head's loss) ``type`` resolves like this:

* ``'mmdet.FCOSHead'`` / ``'mmseg.FCNHead'``: the named package's registry (mmengine splits the scope).
* a bare name (``'ResNet'``): our registry first; if it is not ours, the name must exist in exactly one of
  the OpenMMLab packages we bridge, otherwise the error lists every candidate.

A foreign class is built inside its package's default scope (:func:`scope_context`), so that its own sub-builds
(an mmdet head's ``loss_cls=dict(type='FocalLoss')``) find their types in their own registry.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

from mmengine.registry import DefaultScope, Registry

from multitask_vision.registry import MODELS, SCOPE

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


def resolve_block_type(type_name: str, kind: str = "block") -> tuple[str, type]:
    """Return ``(scope, class)`` for a ``type`` from a config (``kind`` names what it is in the errors).

    Raises :class:`UnknownTypeError` naming close matches for an unknown name, and every candidate
    scope for a bare name that several packages define.
    """
    if "." in type_name:
        scope, name = type_name.split(".", 1)
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
    raise UnknownTypeError(f"unknown {kind} type {type_name!r}{hint}")


@contextlib.contextmanager
def scope_context(scope: str) -> Iterator[None]:
    """Make ``scope`` the default scope while a class of that scope is built (nothing to do for ours)."""
    if scope == SCOPE:
        yield
        return
    with DefaultScope.overwrite_default_scope(scope):
        yield
