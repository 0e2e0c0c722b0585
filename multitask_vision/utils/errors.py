"""Errors that end a run with one line instead of a traceback.

The entry scripts print these as ``error: <message>`` and exit with the error's ``exit_code``, wherever they are
raised: while building the Runner, inside it (a hook, a dataset or sampler built lazily by ``runner.train()``), or
in a dataloader worker. Anything else is a bug and keeps its traceback. Raise them only for what the user can fix
(a config key, a file, a value) and name it in the message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


class UserError(ValueError):
    """A mistake in a config, a command line or a file the user gave: the message names it (exit code 2)."""

    exit_code = 2


class DataError(UserError):
    """A dataset file that cannot be used as it is: missing, truncated, of the wrong size, or holding a value
    outside what its task allows. The message names the file (and the value)."""


class TrainingDivergedError(RuntimeError):
    """Training stopped because its numbers stopped being finite (exit code 3): the message names the task, the
    iteration and the last good checkpoint."""

    exit_code = 3


def writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a folder this process can write into, created with its parents if missing; else a
    :class:`UserError` naming it (checked before any work that would be lost at the first write)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"{what} {path} is not writable: {e.strerror or e}") from e
    return path
