"""What the benchmark scripts share: building a config's model and its real training batches, timing two or more
variants in ABBA order in one process, the machine description and the JSON/table output.

Not a benchmark itself (``uv run python benchmarks/<name>.py --help`` for those).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {
    "quickstart": "configs/quickstart.py",
    "mmlab": "configs/det_seg_depth_mmlab.py",
    "hydranet": "configs/hydranet_nyu.py",
}


def setup(threads: int | None) -> None:
    """Run from the repository root (configs name data paths relative to it), register our modules, fix the
    intra-op threads (``None``: torch's default)."""
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import logging
    import warnings

    warnings.simplefilter("ignore")
    from mmengine.logging import MMLogger

    import multitask_vision

    MMLogger.get_instance("mmengine").setLevel(logging.WARNING)  # no init_weights / dataset chatter

    multitask_vision.register_all_modules()
    if threads:
        torch.set_num_threads(threads)


def load_config(name_or_path: str, cfg_options: dict | None = None):
    """The config with ``cfg_options``, its task weighting fixed weights of 1 (unless an option sets it): the
    hand-written models sum the task losses, so the framework is timed doing the same (the quickstart and
    HydraNet configs learn uncertainty weights: a scalar and an exp per task more)."""
    from mmengine.config import ConfigDict

    from multitask_vision.models.builder import as_config

    cfg = as_config(CONFIGS.get(name_or_path, name_or_path), cfg_options)
    if not any(k.startswith("model.task_weighting") for k in cfg_options or {}):
        cfg.model.task_weighting = ConfigDict(type="FixedTaskWeighting")
    return cfg


def build_model(cfg, device: str = "cpu", seed: int = 0) -> Any:
    """The config's model with its own initialisation (``init_weights``, as the Runner does), in train mode."""
    from multitask_vision.registry import MODELS

    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    return model.to(device).train()


def sized_sources(
    cfg, side: int | None, num_train: int | None = None, data_dir: str | Path | None = None
) -> list[dict]:
    """The config's training sources; with ``side`` their synthetic images are ``side`` x ``side`` (generated
    once under ``<data_root>_<side>``, or ``<data_dir>/<its last folder>_<side>``, ``num_train`` images per
    source, so the config's own data stays as it is)."""
    sources = [copy.deepcopy(dict(s)) for s in cfg.train_dataloader.dataset.sources]
    for src in sources:
        if side is not None and "image_size" in src:
            root = src["data_root"].rstrip("/")
            if data_dir is not None:
                root = str(Path(data_dir) / Path(root).name)
            src["image_size"] = (side, side)
            src["data_root"] = f"{root}_{side}"
            src["num_train"] = num_train or 64
            src["num_val"] = 8
    return sources


def source_loader(source: dict, batch_size: int, num_workers: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader over one source through its full training pipeline, collated as the Runner collates."""
    from mmengine.dataset import pseudo_collate

    from multitask_vision.registry import DATASETS

    dataset = DATASETS.build(copy.deepcopy(source))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=pseudo_collate,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=num_workers > 0,
        **kwargs,
    )


def raw_batches(
    cfg, per_source: int, side: int | None = None, batch_size: int | None = None, data_dir=None
) -> list[dict]:
    """``per_source`` collated training batches of every source (before the data preprocessor: what a
    ``train_step`` takes), alternating sources."""
    bs = batch_size or cfg.train_dataloader.batch_size
    per = []
    for source in sized_sources(cfg, side, max(64, 2 * bs * per_source), data_dir):
        it = iter(source_loader(source, bs, 0))
        per.append([next(it) for _ in range(per_source)])
    return [data for group in zip(*per) for data in group]


def pipeline_batches(
    cfg,
    model,
    per_source: int,
    side: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
) -> list[tuple[torch.Tensor, list]]:
    """``per_source`` training batches of every source of ``cfg`` (homogeneous by source, as training draws
    them), each through the full pipeline and ``model``'s data preprocessor: ``[(inputs, samples), ...]``
    alternating sources."""
    bs = batch_size or cfg.train_dataloader.batch_size
    per: list[list] = []
    for source in sized_sources(cfg, side, data_dir=data_dir):
        it = iter(source_loader(source, bs, 0))
        per.append([next(it) for _ in range(per_source)])
    out = []
    for group in zip(*per):
        for data in group:
            data = model.data_preprocessor(data, True)
            samples = [s.to(device) for s in data["data_samples"]]
            out.append((data["inputs"].to(device), samples))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def abba(fns: dict[str, Callable[[int], Any]], rounds: int, device: str = "cpu", warmup: int = 2) -> dict:
    """Time each function ``rounds`` times, the order of the variants reversed every other round (A B, B A,
    A B ... for two; reversed likewise for more), so that a drift in machine load hits every variant alike.
    Each call gets the round number (every variant of a round works on the same batch).
    Returns ``{name: [seconds, ...]}``."""
    names = list(fns)
    for r in range(min(warmup, rounds)):
        for n in names:
            fns[n](r)
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else reversed(names):
            sync(device)
            start = time.perf_counter()
            fns[n](r)
            sync(device)
            times[n].append(time.perf_counter() - start)
    return times


def ratio_stats(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median of the per-round ratios ``num[i] / den[i]`` and their inter-quartile range."""
    ratios = sorted(a / b for a, b in zip(num, den))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2], "n": len(ratios)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where and when: CPU, cores, load (1/5/15 min), threads, GPU, versions, date."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "mmengine", "mmcv", "mmdet", "mmsegmentation", "onnxruntime", "torchvision"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def write_results(name: str, payload: dict, out_dir: str | Path | None = None) -> Path:
    """``<out_dir or benchmarks/results>/<name>.json``; the path is printed."""
    folder = Path(out_dir) if out_dir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"results: {path}")
    return path


def finish(
    benchmark: str, args, before: dict, rows: list, *, on: str = "cpu", name: str | None = None, **extra
):
    """The closing payload of a benchmark (its name, the machine as it was before, the load average after, the
    ``extra`` fields and the rows; ``on``: the device), written to ``<args.out>/<args.name or name or
    benchmark>.json``."""
    payload = dict(
        benchmark=benchmark, machine=before, load_avg_after=machine(on)["load_avg"], **extra, rows=rows
    )
    write_results(args.name or name or benchmark, payload, args.out)
    return payload


def table(rows: list[dict], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (floats to 3 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def add_common_args(p, threads: int | None = 1) -> None:
    p.add_argument("--threads", type=int, default=threads, help=f"torch intra-op threads ({threads})")
    p.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    p.add_argument("--name", default=None, help="results file name without .json (default: the script's)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="where data resized by --size(s) is generated (default: beside the config's)",
    )
