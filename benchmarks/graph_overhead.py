"""Graph overhead: the framework's ``MultiTaskModel`` against the same modules (same weights) called by a
hand-written forward (``benchmarks/hand_written.py``), on the same preprocessed training batches.

uv run python benchmarks/graph_overhead.py                       # the three models, config size and 64x64
uv run python benchmarks/graph_overhead.py --configs quickstart --sizes 64 --rounds 32

For every model config and image side: a training step (loss + backward, no optimizer) and inference
(``predict``: heads' decoding into the samples), hand-written and framework run alternately in one process, the
order reversed every other round (ABBA), each round on the same batch (batches alternate between the config's
sources, as training draws them, so the per-task routing of samples is exercised). The ratio is
``time(hand-written) / time(framework)`` per round, median and quartiles: 1.0 means the framework costs
nothing, below 1 that it is slower. ``fw_python_share``: the share of a Python profile of the framework's step
spent in the framework's own machinery (routing, adapters, graph, task weighting: ``FRAMEWORK_FILES``), a
load-independent upper bound of its overhead. Before timing, the loss of both is compared (same seed for dropout): they
must compute the same thing. Prints a table and writes ``benchmarks/results/graph_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from hand_written import BY_HAND  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(BY_HAND), choices=list(BY_HAND))
    p.add_argument(
        "--sizes", nargs="+", default=["config", "64"], help="image sides: 'config' (its data) and/or ints"
    )
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's; 2 below 128)")
    p.add_argument("--rounds", type=int, default=16, help="timed rounds per variant (16)")
    p.add_argument("--device", default="cpu")
    C.add_common_args(p)
    return p.parse_args(argv)


def loss_gap(model, hand, batch) -> float:
    """|framework loss - hand-written loss| on one batch, with the same random state (dropout)."""
    x, samples = batch
    torch.manual_seed(0)
    fw, _ = model.parse_losses(model.loss(x, samples))
    torch.manual_seed(0)
    by_hand = hand.loss(x, samples)
    return abs(float(fw) - float(by_hand))


# the framework's own machinery (what the hand-written models do without): routing, adapters, graph, specs,
# task weighting, loss keys; not the native blocks and heads, which the hand-written models call too
FRAMEWORK_FILES = (
    "models/multitask_model.py",
    "models/adapters/",
    "models/graph.py",
    "models/spec.py",
    "models/task_weighting.py",
    "multitask_vision/structures.py",
)


def framework_share(fn, calls: int) -> float:
    """Share of the Python profile's own time (``tottime``) spent in the framework's machinery
    (``FRAMEWORK_FILES``) over ``calls`` calls of ``fn``: an upper bound of what the routing costs (the profiler
    slows Python code more than the kernels it calls), and not subject to the machine's load."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for r in range(calls):
        fn(r)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    ours = sum(
        v[2]
        for (path, _, _), v in stats.items()
        if any(part in path.replace(os.sep, "/") for part in FRAMEWORK_FILES)
    )
    return ours / total


def measure(name: str, size: str, args) -> list[dict]:
    """Both phases of one config at one image side: rows of the results table."""
    cfg = C.load_config(name)
    model = C.build_model(cfg, args.device)
    hand = BY_HAND[name](model)
    side = None if size == "config" else int(size)
    batch_size = args.batch or (2 if side is not None and side < 128 else None)
    batches = C.pipeline_batches(cfg, model, 2, side, batch_size, args.device, args.data_dir)
    x0 = batches[0][0]
    gap = loss_gap(model, hand, batches[0])

    def train_fw(r):
        x, samples = batches[r % len(batches)]
        loss, _ = model.parse_losses(model.loss(x, samples))
        loss.backward()
        model.zero_grad(set_to_none=True)

    def train_hand(r):
        x, samples = batches[r % len(batches)]
        hand.loss(x, samples).backward()
        model.zero_grad(set_to_none=True)

    def infer_fw(r):
        x, samples = batches[r % len(batches)]
        model.predict(x, samples)

    def infer_hand(r):
        x, samples = batches[r % len(batches)]
        hand.predict(x, samples)

    rows = []
    for phase, fns in (
        ("train", {"hand": train_hand, "framework": train_fw}),
        ("infer", {"hand": infer_hand, "framework": infer_fw}),
    ):
        model.train(phase == "train")
        times = C.abba(fns, args.rounds, args.device)
        share = framework_share(fns["framework"], 2)
        stats = C.ratio_stats(times["hand"], times["framework"])
        rows.append(
            dict(
                config=name,
                size=f"{x0.shape[-2]}x{x0.shape[-1]}",
                batch=int(x0.shape[0]),
                phase=phase,
                hand_ms=1000 * sorted(times["hand"])[len(times["hand"]) // 2],
                framework_ms=1000 * sorted(times["framework"])[len(times["framework"]) // 2],
                ratio=stats["median"],
                ratio_iqr=f"{stats['q1']:.3f}-{stats['q3']:.3f}",
                loss_gap=gap,
                fw_python_share=share,
                times=times,
            )
        )
        print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    return rows


COLUMNS = (
    "config", "size", "batch", "phase", "hand_ms", "framework_ms", "ratio", "ratio_iqr", "fw_python_share", "loss_gap"
)  # fmt: skip


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    before = C.machine(args.device)
    print(C.table([], COLUMNS))
    rows = [row for name in args.configs for size in args.sizes for row in measure(name, size, args)]
    print()
    print(C.table(rows, COLUMNS))
    return C.finish(
        "graph_overhead", args, before, rows, on=args.device, rounds=args.rounds, device=args.device
    )


if __name__ == "__main__":
    main()
