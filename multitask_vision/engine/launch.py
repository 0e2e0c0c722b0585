"""What the entry points share: their common arguments (the config positional or ``--config``, ``--out``,
``--launcher``), loading a config with overrides, distributed set-up, one-line errors."""

from __future__ import annotations

import argparse
import ast
import contextlib
import logging
import os
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the scripts)

from multitask_vision.utils.config import normalize_config
from multitask_vision.utils.errors import UserError

# Errors a user causes with a config or a file while the Runner is set up: printed as one line, exit code 2, no
# traceback. Once training runs, only UserError (and its subclasses) is, so that a bug keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, TypeError, OSError)


# torchao registers an Enum with torch's pytree when imported (deploy, QAT, inference of int8 files) and torch
# warns about it: not ours to fix. Every entry script imports this module, so it is silenced here once.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

# mmengine's launchers (``mmengine.dist.init_dist``)
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The config file, positional as in mmdet's and mmseg's tools (``train.py configs/x.py``) or ``--config``;
    :func:`parse_cli` checks that exactly one config was given."""
    parser.add_argument("config", nargs="?", help="config file (.py)")
    parser.add_argument("--config", dest="config_option", metavar="CONFIG", help="the same, as an option")


def add_out_argument(parser: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    """The output folder: ``--out`` everywhere (``--output`` is accepted too)."""
    parser.add_argument("--out", "--output", dest="out", metavar="DIR", required=required, help=help_text)


def parse_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` with the config of :func:`add_config_argument` resolved into ``args.config``."""
    args = parser.parse_args(argv)
    positional, option = args.config, args.config_option
    del args.config_option
    if positional and option and positional != option:
        parser.error(f"two configs given: {positional} and --config {option}")
    args.config = positional or option
    if not args.config:
        parser.error("the config file is required (first argument, or --config)")
    return args


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None) -> Config:
    """A config file with ``--cfg-options`` merged (schedulers follow a new training length), its accepted
    spellings translated (:func:`~multitask_vision.utils.config.normalize_config`) and ``work_dir`` set (the
    argument, else the config's, else ``work_dirs/<config name>``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:  # mmengine parses the text without a file name: find the file and line
        raise UserError(_syntax_error(Path(path), e)) from None
    if cfg_options:
        lengths = _schedule_lengths(cfg)
        cfg.merge_from_dict(cfg_options)
        _follow_schedule_length(cfg, lengths)
    normalize_config(cfg, f"config {path}")
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(path).stem)
    return cfg


def _syntax_error(path: Path, fallback: SyntaxError) -> str:
    """``<file>, line <n>: <message>`` of the first config file (``path`` or one of its ``_base_`` files, depth
    first) that does not parse."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        file = todo.pop(0).resolve()
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except SyntaxError as e:
            return f"syntax error in config file {file}, line {e.lineno}: {e.msg}"
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
                with contextlib.suppress(ValueError):
                    bases = ast.literal_eval(node.value)
                    todo[:0] = [file.parent / b for b in ([bases] if isinstance(bases, str) else bases)]
    return (
        f"syntax error in config file {path} (or a file it includes), line {fallback.lineno}: {fallback.msg}"
    )


def _schedule_lengths(cfg: Config) -> dict[bool, int]:
    """The training length, keyed by ``by_epoch``: {False: max_iters} or {True: max_epochs}."""
    loop = cfg.get("train_cfg") or {}
    return {
        by_epoch: loop[key] for by_epoch, key in ((False, "max_iters"), (True, "max_epochs")) if key in loop
    }


def _follow_schedule_length(cfg: Config, before: dict[bool, int]) -> None:
    """When ``--cfg-options`` changes ``train_cfg.max_iters`` (or ``max_epochs``), the parameter schedulers
    that ended with training (``end`` equal to the old length) end with the new one: a config can only
    write ``end=max_iters`` as a number, so without this a shortened run would stop mid-decay and a
    lengthened one would train at the final learning rate for the rest. Each change is logged."""
    from mmengine.logging import print_log

    after = _schedule_lengths(cfg)
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, sched in enumerate(schedulers):
        by_epoch = bool(sched.get("by_epoch", True))
        old, new = before.get(by_epoch), after.get(by_epoch)
        if old is None or new is None or old == new or sched.get("end") != old:
            continue
        if sched.get("begin", 0) >= new:
            unit = "epoch" if by_epoch else "iteration"
            print_log(
                f"param_scheduler[{i}] ({sched.get('type')}) begins at {sched.get('begin')}, at or after the "
                f"last {unit} ({new}): it will never act",
                logger="current",
                level=logging.WARNING,
            )
            continue
        sched["end"] = new
        print_log(
            f"param_scheduler[{i}] ({sched.get('type')}).end follows the training length: {old} -> {new}",
            logger="current",
        )


def setup_distributed(launcher: str, cfg: Config) -> None:
    """On machines without CUDA, start a gloo process group ourselves (mmengine 0.10.7's ``init_dist``
    calls ``torch.cuda.set_device``) and make DDP wrap a CPU model (``device_ids=None``). With CUDA the Runner
    initialises the launcher itself (``pytorch``, ``slurm``, ``mpi``)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    cfg.launcher = launcher
    if launcher == "none" or torch.cuda.is_available():
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        if launcher != "pytorch":
            _torch_env_from_launcher(launcher)
        dist.init_process_group("gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or dict(type="MultiTaskDistributedDataParallel"))
    wrapper["device_ids"] = None
    cfg.model_wrapper_cfg = wrapper


def _torch_env_from_launcher(launcher: str) -> None:
    """Set torch's ``env://`` variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) from
    a Slurm or Open MPI launch, as mmengine's ``init_dist`` does for CUDA."""
    env = os.environ
    names = dict(
        slurm=("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
        mpi=("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    )[launcher]
    missing = [n for n in names if n not in env]
    if missing:
        runner = "srun" if launcher == "slurm" else "mpirun"
        raise ValueError(
            f"--launcher {launcher}: {', '.join(missing)} not set (start the processes with {runner})"
        )
    if "MASTER_ADDR" not in env:
        if launcher == "mpi":
            raise ValueError(
                "--launcher mpi: set MASTER_ADDR to rank 0's address (mpirun -x MASTER_ADDR=...)"
            )
        import subprocess

        nodes = env.get("SLURM_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
        env["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1").strip()
    env.setdefault("MASTER_PORT", "29500")
    env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = (env[n] for n in names)


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]):
    """Inside: a config or input error (``kinds``, default :data:`USER_ERRORS`) becomes ``error: <reason>`` on
    stderr and the error's ``exit_code`` (2 unless it says otherwise; no traceback, ``MTV_DEBUG=1`` shows it).
    Wrap set-up only, or name narrow ``kinds`` (:class:`~multitask_vision.utils.errors.UserError`), so that a
    bug during training keeps its traceback."""
    caught: tuple[type[BaseException], ...] = kinds or USER_ERRORS
    try:
        yield
    except Exception as e:
        if not (isinstance(e, caught) or _bad_config_arguments(e)) or os.environ.get("MTV_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))


def _bad_config_arguments(e: Exception) -> bool:
    """A ``TypeError`` raised where mmengine's registry calls a class with a config dict's arguments, because the
    class does not take them (a mistyped key, e.g. of a dataset built lazily inside ``runner.train()``): a user
    error. A ``TypeError`` raised anywhere deeper (a bug) is not."""
    if not isinstance(e, TypeError) or not any(s in str(e) for s in _ARGUMENT_ERRORS):
        return False
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code if tb is not None else None
    return (
        code is not None and code.co_name == "build_from_cfg" and "registry" in Path(code.co_filename).parts
    )


_ARGUMENT_ERRORS = (
    "got an unexpected keyword argument",
    "required positional argument",
    "required keyword-only",
)


def one_line(e: BaseException) -> str:
    """The reason an error gives, in one line; for an error re-raised from a dataloader worker (whose message is
    ``Caught X in DataLoader worker process N`` and the worker's traceback), the worker's own message."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    lines = [line for line in msg.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        last = lines[-1]
        lines = [last.split(": ", 1)[1] if last.startswith(type(e).__module__) and ": " in last else last]
    return lines[0] if lines else type(e).__name__
