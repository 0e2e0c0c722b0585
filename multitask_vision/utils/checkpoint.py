"""Loading checkpoints safely: torch's weights-only unpickler with an allow-list that reaches nothing else.

torch defaults to ``torch.load(weights_only=True)``; mmengine 0.10.7 does not pass ``weights_only``, and a Runner
checkpoint pickles a few non-tensor objects: the message hub's ``HistoryBuffer`` (whose ``__getstate__`` stores
its ``statistics_methods``, the functions ``HistoryBuffer.min/max/current/mean``, which pickle protocol 2 writes
as ``getattr(HistoryBuffer, 'min')``) and numpy arrays and scalars.

Allowing ``builtins.getattr`` itself would let a pickle walk from any allowed object to any attribute (e.g.
``getattr(getattr, '__self__')`` is the ``builtins`` module, whose ``__dict__`` a ``SETITEM`` then rewrites): code
execution at load time. So ``builtins.getattr`` is registered under its name as a stand-in that returns only
those four statistics methods of ``HistoryBuffer``, and ``HistoryBuffer`` itself as a stand-in whose
``__setstate__`` keeps only the default statistics (a pickle cannot install another function in the class-wide
table) and then becomes a plain ``HistoryBuffer``.

Every load of a local file goes through :func:`load_checkpoint_file`: ours directly, and mmengine's
(``Runner.resume``, ``load_from``, ``init_cfg=dict(type='Pretrained')``) because :func:`install_safe_loading`
(called by ``multitask_vision.register_all_modules``) makes it mmengine's loader for local paths.

What a file holds, and putting it into a built model, is here too (:func:`load_weights`): a Runner checkpoint, a
bare state dict, or a pruned model written by ``compression.pruning.save_pruned`` (its layers' new shapes are
applied first, :func:`apply_shapes`), loaded strictly with a one-line message naming the keys that differ.
``multitask_vision.models.builder.build_model`` builds a model from a config and loads a file through it.

A work dir stands for its last checkpoint wherever a checkpoint is read (:func:`resolve_checkpoint`), and
``<work_dir>/latest.pth`` follows the last checkpoint during training (:func:`link_latest`, called by
``engine.hooks.LatestCheckpointHook``), as mmcv's runner kept it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from torch import Tensor, nn

from multitask_vision.utils.errors import UserError

_STATISTICS = ("min", "max", "current", "mean")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file asks the unpickler for something a checkpoint of ours never holds."""


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` as a checkpoint may call it: ``HistoryBuffer``'s statistics methods, nothing else."""
    # the pickle's global name for HistoryBuffer resolves to the stand-in below
    if obj in (HistoryBuffer, _SafeHistoryBuffer) and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f"the file asks for attribute {name!r} of a {type(obj).__name__}: refused "
        "(a checkpoint may only name HistoryBuffer's statistics methods)"
    )


class _SafeHistoryBuffer(HistoryBuffer):
    """Unpickled in place of ``HistoryBuffer``: drops any non-default ``statistics_methods`` of the pickle, then
    turns into a plain ``HistoryBuffer`` (same instance layout), so nothing after loading sees the stand-in."""

    def __setstate__(self, state: dict) -> None:
        methods = state.pop("statistics_methods", {}) or {}
        for key, fn in dict(methods).items():
            if key not in _STATISTICS or fn is not getattr(HistoryBuffer, key):
                raise UnsafeCheckpointError(
                    f"the file registers {fn!r:.60} as HistoryBuffer statistic {key!r}: refused"
                )
        self.__class__ = HistoryBuffer  # type: ignore[assignment]
        HistoryBuffer.__setstate__(self, state)


def _numpy_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved np.core to np._core
    out = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return out


def safe_globals() -> list:
    """The exact non-tensor globals a Runner checkpoint of this project pickles (stand-ins where the real
    object would reach further than a checkpoint needs)."""
    history = f"{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}"
    return [(_SafeHistoryBuffer, history), (_restricted_getattr, "builtins.getattr"), *_numpy_globals()]


@contextlib.contextmanager
def checkpoint_safe_globals():
    """Allow exactly :func:`safe_globals` to torch's weights-only unpickler inside the block (for mmengine's own
    loads, e.g. ``Runner.resume``; use :func:`load_checkpoint_file` for ours)."""
    with torch.serialization.safe_globals(safe_globals()):
        yield


class CheckpointError(UserError):
    """A checkpoint file that cannot be read: missing, truncated, corrupt or refused as unsafe (one line)."""


# what a work dir holds besides its checkpoints: mmengine's record of the last one, and our link to it
LAST_CHECKPOINT_RECORD = "last_checkpoint"
LATEST_LINK = "latest.pth"


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` means: a file is itself; a folder is a work dir, meaning its last checkpoint
    (the file mmengine's ``last_checkpoint`` record names, else ``latest.pth``). ``FileNotFoundError`` with one
    line otherwise. :func:`load_checkpoint_file` calls it, so every entry point takes a work dir too."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    recorded = recorded_checkpoint(path)
    if recorded is not None:
        return recorded
    if (path / LATEST_LINK).is_file():
        return path / LATEST_LINK
    raise FileNotFoundError(
        f"checkpoint not found: {path} is a folder without a checkpoint ({LAST_CHECKPOINT_RECORD} names none "
        f"that exists, no {LATEST_LINK})"
    )


def recorded_checkpoint(work_dir: str | Path) -> Path | None:
    """The existing checkpoint file mmengine's ``<work_dir>/last_checkpoint`` record names, or None. The record
    holds the path as training wrote it (often relative to where it ran): else the file of that name beside it."""
    record = Path(work_dir) / LAST_CHECKPOINT_RECORD
    if not record.is_file():
        return None
    named = Path(record.read_text().strip())
    for candidate in (named, Path(work_dir) / named.name):
        if named.name and candidate.is_file():
            return candidate
    return None


def link_latest(checkpoint: str | Path, link: str | Path) -> str:
    """Make ``link`` (``<work_dir>/latest.pth``) point at ``checkpoint``, replacing it atomically (a reader sees
    the old or the new one, never none): a relative symlink when both are in one folder (as mmcv's runner made
    it), else an absolute one; a hard link, then a copy, where symlinks cannot be made. Returns the kind."""
    checkpoint, link = Path(checkpoint), Path(link)
    same_dir = checkpoint.parent.resolve() == link.parent.resolve()
    target = checkpoint.name if same_dir else str(checkpoint.resolve())
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    for kind in ("symlink", "hardlink", "copy"):
        try:
            tmp.unlink(missing_ok=True)
            if kind == "symlink":
                os.symlink(target, tmp)
            elif kind == "hardlink":
                os.link(checkpoint, tmp)
            else:
                shutil.copyfile(checkpoint, tmp)
            os.replace(tmp, link)
            return kind
        except OSError:
            if kind == "copy":
                tmp.unlink(missing_ok=True)
                raise
    raise AssertionError("unreachable")


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` of a checkpoint with weights-only loading and :func:`safe_globals`: the one way every entry
    point reads a ``.pth`` (a work dir means its last checkpoint, :func:`resolve_checkpoint`). Raises
    :class:`CheckpointError` with one line naming the file and the reason."""
    path = resolve_checkpoint(path)
    try:
        with checkpoint_safe_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        reason = _torch_reason(e)
        if isinstance(e, pickle.UnpicklingError):
            reason = f"unsafe or corrupt pickle: {reason}"
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from e


def verify_checkpoint_file(path: str | Path) -> None:
    """Check that a checkpoint file is whole without unpickling it: torch writes a zip archive whose members carry
    CRC-32s, so a truncated file (no central directory) or a changed byte is found here, before anything loads it
    (``torch.load`` itself would read a changed tensor byte silently). Raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or not a torch checkpoint ({e})"
        ) from e
    if bad is not None:
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt (CRC mismatch in {bad})")


def _torch_reason(e: BaseException) -> str:
    """The line of a torch loading error that says what is wrong (torch prefixes a paragraph of advice)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def load_from_local_weights_only(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file scheme (its log line says "Loads checkpoint by local_weights_only backend")."""
    return load_checkpoint_file(Path(filename).expanduser(), map_location=map_location)


def install_safe_loading() -> None:
    """Make :func:`load_checkpoint_file` mmengine's loader for local files (its ``CheckpointLoader`` scheme
    ``''``), so the Runner's resume and ``load_from`` and every ``Pretrained`` init use the same allow-list."""
    from mmengine.runner.checkpoint import CheckpointLoader

    if CheckpointLoader._schemes.get("") is not load_from_local_weights_only:
        CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_weights_only, force=True)


# ------------------------------------------------------------------------------------------ contents -> model
PRUNED_FORMAT = "multitask_vision.pruned/1"
# structural attributes recorded per module type, so a pruned model can be rebuilt before loading weights
SHAPE_ATTRS: dict[type, tuple[str, ...]] = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    nn.modules.batchnorm._BatchNorm: ("num_features",),
    nn.GroupNorm: ("num_channels", "num_groups"),
    nn.LayerNorm: ("normalized_shape",),  # a tuple (timm's LayerNorm2d of ConvNeXt, ViT's LayerNorm)
}


def structural_shapes(model: nn.Module) -> dict[str, dict[str, int | list[int]]]:
    """``{module name: {attr: value}}`` of every conv / linear / norm layer (what a rebuild needs); a tuple
    attribute (``normalized_shape``) is stored as a list of ints (weights-only loading reads lists)."""
    out = {}
    for name, mod in model.named_modules():
        for cls, attrs in SHAPE_ATTRS.items():
            if isinstance(mod, cls):
                out[name] = {a: _shape_value(getattr(mod, a)) for a in attrs}
                break
    return out


def _shape_value(value: Any) -> int | list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else int(value)


def apply_shapes(
    model: nn.Module, shapes: dict[str, dict[str, int | list[int]]], state_dict: dict[str, Tensor]
) -> None:
    """Set the recorded structural attributes and resize every parameter / buffer to its saved shape."""
    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        mod = modules.get(name)
        if mod is None:
            raise ValueError(
                f"pruned model: the config has no layer {name!r}; was it saved from another config?"
            )
        for attr, value in attrs.items():
            setattr(mod, attr, tuple(value) if isinstance(value, list) else value)
    for key, saved in state_dict.items():
        owner, _, leaf = key.rpartition(".")
        mod = modules.get(owner)
        if mod is None:
            continue  # the strict load names it
        if leaf in mod._parameters and mod._parameters[leaf] is not None:
            old = mod._parameters[leaf]
            if tuple(old.shape) != tuple(saved.shape):
                mod._parameters[leaf] = nn.Parameter(
                    torch.empty(saved.shape, dtype=saved.dtype), requires_grad=old.requires_grad
                )
        elif leaf in mod._buffers and mod._buffers[leaf] is not None:
            old_buf = mod._buffers[leaf]
            if tuple(old_buf.shape) != tuple(saved.shape):
                mod._buffers[leaf] = torch.empty(saved.shape, dtype=saved.dtype)


def state_dict_of(blob: Any, path: str | Path) -> dict[str, Tensor]:
    """The weights a checkpoint holds (a Runner checkpoint's ``state_dict``, a pruned model's, or a bare state
    dict), with DDP's ``module.`` prefix removed."""
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"checkpoint {path} holds no state_dict (neither a Runner checkpoint, a state dict nor a pruned "
            "model file)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _few(keys: list[str], n: int = 3) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def key_mismatch(own: dict[str, Tensor], state: dict[str, Tensor]) -> str | None:
    """One line naming the missing, unexpected and shape-mismatched keys of ``state`` against ``own`` (the first
    3 of each and their count), or None when they match exactly."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{len(keys)} {what}{'s' if len(keys) != 1 else ''} {where}: {_few(keys)}"
        for what, where, keys in (
            ("missing key", "(in the model, not in the checkpoint)", missing),
            ("unexpected key", "(in the checkpoint, not in the model)", unexpected),
            ("key", "of another shape", shapes),
        )
        if keys
    ]
    return "; ".join(problems) or None


def load_weights(model: nn.Module, path: str | Path) -> dict:
    """Load ``path`` into ``model`` exactly: a Runner checkpoint, a bare state dict, or a pruned model file
    (whose recorded layer shapes are applied to ``model`` first); a work dir means its last checkpoint.

    Any missing, unexpected or shape-mismatched key is a ``ValueError`` whose message is one line naming the
    first few keys and their count: a checkpoint of another config must not load partially. Returns the
    checkpoint's ``meta`` (``{}`` for a bare state dict).
    """
    from mmengine.runner.checkpoint import load_state_dict

    path = resolve_checkpoint(path)  # messages name the file, also when a work dir was given
    blob = load_checkpoint_file(path)
    state = state_dict_of(blob, path)
    if isinstance(blob, dict) and blob.get("format") == PRUNED_FORMAT:
        apply_shapes(model, blob["shapes"], state)
    problems = key_mismatch(model.state_dict(), state)
    if problems:
        raise ValueError(f"checkpoint {path} does not match the config's model: {problems}")
    load_state_dict(model, state, strict=True)
    meta = blob.get("meta") if isinstance(blob, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}
