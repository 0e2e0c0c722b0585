"""Loading mmengine checkpoints under torch >= 2.6 without turning weights-only loading off.

torch defaults to ``torch.load(weights_only=True)`` and mmengine 0.10.7 does not pass ``weights_only``, so a
Runner checkpoint (it pickles the message hub's ``HistoryBuffer`` and numpy scalars) needs exactly these
globals allowed. Use :func:`checkpoint_safe_globals` around every load of our own checkpoints.
"""

from __future__ import annotations

import builtins
import contextlib

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved np.core to np._core
    out = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return out


def safe_globals() -> list:
    """The exact non-tensor types a Runner checkpoint of this project pickles."""
    return [HistoryBuffer, builtins.getattr, *_numpy_globals()]


@contextlib.contextmanager
def checkpoint_safe_globals():
    with torch.serialization.safe_globals(safe_globals()):
        yield
