"""Measurements of each deployment stage, per-task evaluation, and ``report.json`` / ``report.md``.

* parameters: elements of every stored weight (PyTorch: parameters, plus the int8 constants of PT2E graphs;
  ONNX: initializers);
* MACs: ``torch.utils.flop_counter.FlopCounterMode`` on a batch-1 forward (FLOPs / 2), counted on the PyTorch
  model a file was exported from;
* latency: median of N timed calls after warm-up, batch 1, fixed intra-op threads (recorded with the CPU model);
* metrics: the training config's ``test_dataloader`` and ``test_evaluator`` (optionally on an evenly spread
  subset), through the model's own ``predict`` or, for exported files, through
  :mod:`multitask_vision.compression.postprocess` on the runtime's outputs.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

# ------------------------------------------------------------------------------------------ size / params / MACs


def file_size_mb(path: str | Path | None) -> float | None:
    return None if path is None or not Path(path).is_file() else os.path.getsize(path) / 2**20


def stored_elements(model: nn.Module) -> int:
    """Parameters plus tensor constants of PT2E graphs (their int8 weights are not ``Parameter`` s)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + [
        v for m in model.modules() if isinstance(m, torch.fx.GraphModule) for v in _graph_constants(m)
    ]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel()
    return total


def _graph_constants(gm: torch.fx.GraphModule) -> list[Tensor]:
    out: list[Tensor] = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value: Any = gm
            for part in str(node.target).split("."):
                value = getattr(value, part, None)
            if (
                isinstance(value, Tensor)
                and not isinstance(value, nn.Parameter)
                and value.dim() >= 1
                and value.numel() > 1
            ):
                if value.dtype in (torch.int8, torch.uint8, torch.float32):
                    out.append(value)
    return out


def onnx_elements(path: str | Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) >= 1 and np.prod(t.dims) > 1
    )


def count_macs(fn: Callable[[Tensor], Any], img: Tensor) -> int:
    """Multiply-accumulates of one call (``FlopCounterMode`` FLOPs / 2: convolutions, matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(img)
    return counter.get_total_flops() // 2


# ------------------------------------------------------------------------------------------ latency
def latency_interleaved(fns: Sequence[Callable[[], Any]], runs: int, warmup: int) -> list[float]:
    """Median milliseconds of each callable, timed side by side: ``warmup`` untimed calls each, then ``runs``
    rounds that call every callable once, so a load change on a shared machine hits all of them alike."""
    with torch.no_grad():
        for fn in fns:
            for _ in range(warmup):
                fn()
        samples: list[list[float]] = [[] for _ in fns]
        for _ in range(runs):
            for i, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                samples[i].append(time.perf_counter() - t0)
    return [statistics.median(s) * 1e3 for s in samples]


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return dict(
        cpu=model,
        logical_cpus=os.cpu_count(),
        torch=torch.__version__,
        onnxruntime=onnxruntime.__version__,
        python=platform.python_version(),
    )


# ------------------------------------------------------------------------------------------ evaluation
def eval_dataset(cfg: Any):
    """The training config's test dataset."""
    from multitask_vision.registry import DATASETS

    return DATASETS.build(cfg.test_dataloader.dataset)


def eval_loader(cfg: Any, dataset: Any, max_samples: int | None) -> torch.utils.data.DataLoader:
    """Batches of the test dataloader's size over the whole set or ``max_samples`` spread evenly over it (so
    every source, hence every task, is represented), in order, no worker processes."""
    from mmengine.dataset import pseudo_collate

    n = len(dataset)
    idx = (
        list(range(n))
        if not max_samples or max_samples >= n
        else np.linspace(0, n - 1, max_samples).round().astype(int).tolist()
    )
    subset = torch.utils.data.Subset(dataset, idx)
    return torch.utils.data.DataLoader(
        subset,
        batch_size=int(cfg.test_dataloader.get("batch_size", 1)),
        shuffle=False,
        collate_fn=pseudo_collate,
    )


def build_evaluator(cfg: Any, dataset: Any):
    """The training config's ``test_evaluator``, built as mmengine's ``Runner.build_evaluator`` does."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import EVALUATOR

    spec = copy.deepcopy(cfg.test_evaluator)
    if isinstance(spec, dict) and "metrics" in spec:
        spec.setdefault("type", "Evaluator")
        evaluator = EVALUATOR.build(spec)
    else:
        evaluator = Evaluator(spec)
    evaluator.dataset_meta = dataset.metainfo
    return evaluator


def evaluate(
    cfg: Any,
    dataset: Any,
    model: nn.Module,
    max_samples: int | None,
    *,
    outputs_fn: Callable[[Tensor], dict[str, Tensor]] | None = None,
    manifest: dict | None = None,
    wrapper: Any = None,
    progress: Callable | None = None,
    desc: str = "evaluate",
) -> dict[str, float]:
    """Per-task metrics. Without ``outputs_fn``: ``model.test_step`` (the heads' own ``predict``). With it (an
    exported model): the batch is normalised by ``model.data_preprocessor``, run through ``outputs_fn``, and its
    flat outputs decoded by the runtime helper (``manifest``) for the heads it knows; every other head (mmdet,
    mmseg, your own) gets its raw outputs back in their nesting (``wrapper.raw_outputs``) and decodes them with
    its own ``predict_by_feat`` through its adapter, as mmdeploy does. Raises ``NotImplementedError`` for a
    head that cannot decode raw outputs."""
    loader = eval_loader(cfg, dataset, max_samples)
    evaluator = build_evaluator(cfg, dataset)
    model.eval()
    n = 0
    batches = progress(loader, desc) if progress else loader
    with torch.no_grad():
        for data in batches:
            if outputs_fn is None:
                samples = model.test_step(data)  # type: ignore[operator]
            else:
                assert manifest is not None
                prepped = model.data_preprocessor(data, False)  # type: ignore[operator]
                samples = prepped["data_samples"]
                fill_exported_predictions(model, manifest, wrapper, outputs_fn(prepped["inputs"]), samples)
            evaluator.process(data_samples=samples, data_batch=data)
            n += len(samples)
    metrics = evaluator.evaluate(n)
    return {k: float(v) for k, v in metrics.items()}


def fill_exported_predictions(
    model: Any, manifest: dict, wrapper: Any, outputs: dict[str, Tensor], samples: list
) -> None:
    """Predictions of an exported model's flat outputs into ``samples`` (see :func:`evaluate`)."""
    from multitask_vision.compression.postprocess import fill_data_samples

    for name in fill_data_samples(manifest, outputs, samples):  # the heads the runtime helper did not decode
        if wrapper is None:
            raise NotImplementedError(f"the runtime helper does not decode head {name!r}")
        module = model.blocks[name]
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        raw = tree_map(lambda t, d=device: t.to(d), wrapper.raw_outputs(name, outputs))  # this head's only
        model.adapters[name].predict_from_outputs(module, raw, samples)


# ------------------------------------------------------------------------------------------ report
def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _metric_cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def write_report(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """``report.json`` (everything) and ``report.md`` (the table, parity, environment, notes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Deployment report: `{report['config']}`",
        "",
        f"Checkpoint `{report['checkpoint']}`, deploy config `{report['deploy_config']}`. Measured on "
        f"{env['cpu']} ({env['logical_cpus']} logical CPUs), {env['threads']} intra-op thread(s) for torch and "
        f"ONNX Runtime, batch 1 at {env['input_size'][0]}×{env['input_size'][1]}, median of {env['runs']} runs "
        f"after {env['warmup']} warm-up; torch {env['torch']}, onnxruntime {env['onnxruntime']}. Metrics on "
        f"{report['eval_samples']} validation samples.",
        "",
    ]
    primary = report.get("primary_metrics") or []
    header = ["stage", "file", "size (MB)", "params (M)", "MACs (M)", "torch ms", "ORT ms"]
    header += [f"{m['key']}{' ↓' if m['lower_is_better'] else ''}" for m in primary]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in report["stages"]:
        cells = [
            row["stage"],
            f"`{Path(row['file']).name}`" if row.get("file") else "–",
            _fmt(row.get("size_mb"), 2),
            _fmt(None if row.get("params") is None else row["params"] / 1e6, 3),
            _fmt(None if row.get("macs") is None else row["macs"] / 1e6, 1),
            _fmt(row.get("torch_ms"), 2),
            _fmt(row.get("ort_ms"), 2),
            *(_metric_cell((row.get("metrics") or {}).get(m["key"])) for m in primary),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    parity = [r for r in report["stages"] if r.get("parity")]
    if parity:
        lines.append("## Parity (max abs difference per output)")
        lines.append("")
        for row in parity:
            p = row["parity"]
            worst = max(p["max_abs_diff"].values()) if p["max_abs_diff"] else 0.0
            status = (
                ""
                if p.get("tolerance") is None
                else (" ✅" if p["ok"] else " ❌") + f" (tolerance {p['tolerance']:g})"
            )
            lines.append(f"- **{row['stage']}** vs {p['reference']}: worst {worst:.3g}{status}")
            lines.append("  " + ", ".join(f"`{k}` {v:.2g}" for k, v in p["max_abs_diff"].items()))
        lines.append("")
    lines.append("## Steps")
    lines.append("")
    for step in report.get("steps", []):
        lines.append(
            f"- **{step['step']}**: " + ", ".join(f"{k}={v}" for k, v in step.items() if k != "step")
        )
    lines.append("")
    if report.get("notes"):
        lines.append("## Notes")
        lines.append("")
        lines += [f"- {n}" for n in report["notes"]]
        lines.append("")
    lines.append("## All metrics")
    lines.append("")
    keys = sorted({k for r in report["stages"] for k in (r.get("metrics") or {})})
    if keys:
        lines.append("| metric | " + " | ".join(r["stage"] for r in report["stages"]) + " |")
        lines.append("|---|" + "---|" * len(report["stages"]))
        for k in keys:
            lines.append(
                f"| {k} | "
                + " | ".join(_fmt((r.get("metrics") or {}).get(k), 4) for r in report["stages"])
                + " |"
            )
    lines.append("")
    return "\n".join(lines)


def progress_iter() -> Callable:
    """A progress display for calibration and evaluation (mmengine's ``ProgressBar`` on stdout)."""
    from mmengine.utils import ProgressBar

    def wrap(iterable: Sequence | Any, desc: str = "") -> Any:
        try:
            total = len(iterable)
        except TypeError:
            total = 0
        if desc:
            print(f"{desc}:", flush=True)
        bar = ProgressBar(total) if total else None
        for item in iterable:
            yield item
            if bar is not None:
                bar.update()
        if bar is not None:
            print(flush=True)

    return wrap
