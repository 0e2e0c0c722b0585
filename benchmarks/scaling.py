"""Scaling with the work: the framework's training-step time (``train_step``: pre-processing, forward, losses,
backward, guard, AdamW) against the batch size and against the image side, for one model config.

uv run python benchmarks/scaling.py                                   # quickstart
uv run python benchmarks/scaling.py --config hydranet --sides 128 256 512 --batches 1 4 16

Two sweeps on the config's real training pipeline (synthetic images generated at each side): batch sizes at
``--base-side``, image sides at ``--base-batch``. Each point: one warm-up step, then the median of ``--steps``
steps, every point timed in turn within each round (batches alternating between the sources). Writes
``benchmarks/results/scaling_<config>.json`` and a plot ``scaling_<config>.png`` (time per step and per image
against each variable, log-log).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quickstart", help="a name of benchmarks/_common.CONFIGS or a path")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--sides", type=int, nargs="+", default=[128, 192, 256, 384, 512])
    p.add_argument("--base-side", type=int, default=128, help="image side of the batch sweep (128)")
    p.add_argument("--base-batch", type=int, default=4, help="batch size of the side sweep (4)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per point (4)")
    p.add_argument("--device", default="cpu")
    C.add_common_args(p)
    return p.parse_args(argv)


def sweep_times(model, optim, cfg, points: list[tuple[str, int, int]], args) -> list[float]:
    """Median step time of every point, the points timed in turn within each round (the order reversed every
    other round), so that a change of the machine's load spreads over all points instead of a few."""
    data = [C.raw_batches(cfg, 1, side, batch, args.data_dir) for _, side, batch in points]
    fns = {i: (lambda r, d=d: model.train_step(d[r % len(d)], optim)) for i, d in enumerate(data)}
    times = C.abba(fns, args.steps, args.device, warmup=1)
    return [statistics.median(times[i]) for i in range(len(points))]


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, sweep, key, label in (
        (axes[0], "batch", "batch", "batch size"),
        (axes[1], "side", "side", "image side (px)"),
    ):
        pts = [r for r in rows if r["sweep"] == sweep]
        xs = [r[key] for r in pts]
        ax.plot(xs, [r["step_s"] for r in pts], "o-", label="s / step")
        ax.plot(xs, [r["step_s"] / r["batch"] for r in pts], "s--", label="s / image")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title(f"images {rows[0]['side']}x{rows[0]['side']}", fontsize=9)
    axes[1].set_title(f"batch {rows[-1]['batch']}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    from mmengine.optim import build_optim_wrapper

    before = C.machine(args.device)
    cfg = C.load_config(args.config)
    model = C.build_model(cfg, args.device)
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    points = [("batch", args.base_side, b) for b in args.batches]
    points += [("side", s, args.base_batch) for s in args.sides]
    times = sweep_times(model, optim, cfg, points, args)
    rows = [
        dict(sweep=sweep, side=side, batch=batch, step_s=t, images_per_s=batch / t)
        for (sweep, side, batch), t in zip(points, times)
    ]
    print(C.table(rows, COLUMNS))
    name = args.name or f"scaling_{Path(args.config).stem}"
    out = Path(args.out) if args.out else C.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    cpu = before.get("gpu") or before["cpu"]
    plot(rows, out / f"{name}.png", f"{args.config} train_step, {cpu}, {before['torch_threads']} thread(s)")
    return C.finish("scaling", args, before, rows, on=args.device, name=name, config=args.config)


COLUMNS = ("sweep", "side", "batch", "step_s", "images_per_s")

if __name__ == "__main__":
    main()
