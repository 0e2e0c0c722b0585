"""Deploy-config schema: every key is used or rejected with a one-line reason naming it.

A deploy config is an mmengine Python config (``_base_`` and ``--deploy-options`` work) with these sections::

    pruning = dict(method='physical', amount=0.3, targets='all', round_to=8, norm=2)     # optional
    finetune = dict(iters=300, lr=2e-4, log_interval=50)                                  # optional
    quantization = dict(method='static', observer='minmax', backend=['x86', 'onnxruntime'],
                        calib_samples=64)                                                  # optional
    export = dict(format='onnx', heads='all', opset=18, dynamic_batch=True)                # optional
    evaluation = dict(max_samples=None, parity_atol=1e-4)                                  # optional
    benchmark = dict(runs=50, warmup=10, threads=None)                                     # optional

The sections may also be grouped in one ``deploy = dict(pruning=..., quantization=..., export=...)`` (the
spelling of the README this project grew from, :func:`unwrap_deploy`); a section given both ways is an error.

``method`` / ``format`` pick a registered step (``COMPRESSION`` registry: ``PhysicalPruning``,
``StaticQuantization``, ``OnnxExport`` ...) whose keyword arguments are the accepted keys; the step checks
their values. Checks that need the model (block and head names) run once it is built (:meth:`check_model`).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmengine.config import Config

from multitask_vision.registry import COMPRESSION

# section -> method / format -> registered step type
METHODS: dict[str, dict[str, str]] = {
    "pruning": {
        "unstructured": "UnstructuredPruning",
        "structured": "StructuredPruning",
        "physical": "PhysicalPruning",
    },
    "quantization": {
        "static": "StaticQuantization",
        "qat": "QATQuantization",
        "dynamic": "DynamicQuantization",
    },
    "export": {"onnx": "OnnxExport", "torchscript": "TorchScriptExport"},
}
SELECTOR = {"pruning": "method", "quantization": "method", "export": "format"}


class DeployConfigError(ValueError):
    """A deploy config that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class FinetuneCfg:
    """Fine-tune the pruned model with the training config's dataloader and optimizer.

    Args:
        iters: training iterations.
        lr: learning rate (default: the training config's), cosine-decayed to 1% over ``iters``.
        log_interval: iterations between log lines.
    """

    iters: int
    lr: float | None = None
    log_interval: int = 50

    def __post_init__(self) -> None:
        _check_int("finetune.iters", self.iters, 1)
        _check_int("finetune.log_interval", self.log_interval, 1)
        if self.lr is not None and (
            isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0
        ):
            raise DeployConfigError(f"finetune.lr must be a positive number or None, got {self.lr!r}")


@dataclass(frozen=True)
class EvaluationCfg:
    """Per-task metrics (the training config's ``test_dataloader`` + ``test_evaluator``) and parity.

    Args:
        max_samples: evaluate on at most this many validation samples, spread evenly over the set (None: all).
        parity_atol: the fp32 export must match PyTorch within this max abs difference on every output.
    """

    max_samples: int | None = None
    parity_atol: float = 1e-4

    def __post_init__(self) -> None:
        if self.max_samples is not None:
            _check_int("evaluation.max_samples", self.max_samples, 1)
        if (
            isinstance(self.parity_atol, bool)
            or not isinstance(self.parity_atol, (int, float))
            or self.parity_atol <= 0
        ):
            raise DeployConfigError(
                f"evaluation.parity_atol must be a positive number, got {self.parity_atol!r}"
            )


@dataclass(frozen=True)
class BenchmarkCfg:
    """CPU latency: median of ``runs`` timed calls after ``warmup`` calls, batch 1.

    Args:
        runs, warmup: timed and untimed calls.
        threads: intra-op threads of torch and ONNX Runtime (default: torch's current number).
        input_size: (H, W) of the timed input (default: the size of the first validation batch).
    """

    runs: int = 50
    warmup: int = 10
    threads: int | None = None
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_int("benchmark.runs", self.runs, 1)
        _check_int("benchmark.warmup", self.warmup, 0)
        if self.threads is not None:
            _check_int("benchmark.threads", self.threads, 1)
        if self.input_size is not None:
            size = self.input_size
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)
            ):
                raise DeployConfigError(f"benchmark.input_size must be (H, W) positive ints, got {size!r}")
            object.__setattr__(self, "input_size", tuple(size))


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeployConfigError(f"{key} must be an int >= {minimum}, got {value!r}")


@dataclass
class DeployConfig:
    pruning: Any = None  # PruningStep
    finetune: FinetuneCfg | None = None
    quantization: Any = None  # QuantizationStep
    export: Any = None  # ExportStep
    evaluation: EvaluationCfg = field(default_factory=EvaluationCfg)
    benchmark: BenchmarkCfg = field(default_factory=BenchmarkCfg)
    raw: dict = field(default_factory=dict)

    def check_model(self, model: Any) -> None:
        """Checks that need the built model: block / head names of ``pruning.targets``, ``export``."""
        for step in (self.pruning, self.export):
            if step is not None:
                try:
                    step.check_model(model)
                except ValueError as e:
                    raise DeployConfigError(str(e)) from None


def _build_step(section: str, raw: Any) -> Any:
    import multitask_vision.compression  # noqa: F401  (fills COMPRESSION)

    if not isinstance(raw, dict):
        raise DeployConfigError(f"{section} must be a dict, got {type(raw).__name__}")
    raw = dict(raw)
    selector = SELECTOR[section]
    choices = METHODS[section]
    choice = raw.pop(selector, None)
    if choice not in choices:
        raise DeployConfigError(f"{section}.{selector} must be one of {sorted(choices)}, got {choice!r}")
    cls = COMPRESSION.get(choices[choice])
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind == p.KEYWORD_ONLY}
    for key in raw:
        if key not in params:
            raise DeployConfigError(
                f"{section}.{key} is not a key of {section} {selector}={choice!r} (keys: {', '.join([selector, *params])})"
            )
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in raw]
    if missing:
        raise DeployConfigError(f"{section} {selector}={choice!r} needs {section}.{missing[0]}")
    try:
        return COMPRESSION.build(dict(type=choices[choice], **raw))
    except (ValueError, TypeError) as e:
        raise DeployConfigError(str(e).splitlines()[0]) from None


def _build_dataclass(section: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise DeployConfigError(f"{section} must be a dict, got {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise DeployConfigError(f"{section}.{key} is not a key of {section} (keys: {', '.join(names)})")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    ]
    if missing:
        raise DeployConfigError(f"{section} needs {section}.{missing[0]}")
    return cls(**raw)


SECTIONS = ("pruning", "finetune", "quantization", "export", "evaluation", "benchmark")
WRAPPER = "deploy"  # deploy=dict(pruning=..., ...): the sections grouped, as the origin README writes them


def unwrap_deploy(raw: dict) -> dict:
    """The sections of ``raw`` with those grouped in ``deploy=dict(...)`` moved to the top level."""
    if raw.get(WRAPPER) is None:
        return {k: v for k, v in raw.items() if k != WRAPPER}
    grouped = raw[WRAPPER]
    if not isinstance(grouped, dict):
        raise DeployConfigError(f"{WRAPPER} must be a dict of sections, got {type(grouped).__name__}")
    out = {k: v for k, v in raw.items() if k != WRAPPER}
    for key, value in grouped.items():
        if key not in SECTIONS:
            raise DeployConfigError(
                f"unknown deploy-config key {WRAPPER}.{key} (sections: {', '.join(sorted(SECTIONS))})"
            )
        if out.get(key) is not None:
            raise DeployConfigError(f"{key} is given twice, as {key}= and as {WRAPPER}.{key}; keep one")
        out[key] = value
    return out


def parse_deploy_config(raw: dict) -> DeployConfig:
    """Validate a deploy config given as a dict of sections (or with them grouped in ``deploy=dict(...)``)."""
    raw = unwrap_deploy(raw)
    sections = set(SECTIONS)
    for key in raw:
        if key not in sections:
            raise DeployConfigError(
                f"unknown deploy-config key {key!r} (sections: {', '.join(sorted(sections))})"
            )
    get = {k: v for k, v in raw.items() if v is not None}
    dc = DeployConfig(raw=raw)
    for section in ("pruning", "quantization", "export"):
        if section in get:
            setattr(dc, section, _build_step(section, get[section]))
    if "finetune" in get:
        dc.finetune = _build_dataclass("finetune", FinetuneCfg, get["finetune"])
    if "evaluation" in get:
        dc.evaluation = _build_dataclass("evaluation", EvaluationCfg, get["evaluation"])
    if "benchmark" in get:
        dc.benchmark = _build_dataclass("benchmark", BenchmarkCfg, get["benchmark"])
    # across sections
    q = dc.quantization
    if q is not None and q.method == "qat" and dc.finetune is None:
        raise DeployConfigError("quantization.method='qat' trains: add finetune=dict(iters=N)")
    if q is not None and q.onnx_side and (dc.export is None or dc.export.format != "onnx"):
        raise DeployConfigError(
            "quantization.backend 'onnxruntime' quantizes the ONNX export: set export.format='onnx'"
        )
    if dc.pruning is None and dc.finetune is not None and (q is None or q.method != "qat"):
        raise DeployConfigError(
            "finetune needs pruning= (or quantization.method='qat'): there is nothing to recover"
        )
    return dc


def load_deploy_config(path: str | Path, options: dict | None = None) -> DeployConfig:
    """Read and validate a deploy config file (``options``: ``--deploy-options`` overrides)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deploy config not found: {path}")
    cfg = Config.fromfile(str(path))
    if options:
        cfg.merge_from_dict(options)
    raw = {k: _plain(v) for k, v in cfg.to_dict().items()}
    return parse_deploy_config(raw)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
