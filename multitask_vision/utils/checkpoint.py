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
"""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

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


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` of a checkpoint with weights-only loading and :func:`safe_globals`: the one way every entry
    point reads a ``.pth``. Raises :class:`CheckpointError` with one line naming the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
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
