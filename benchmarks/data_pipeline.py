"""Data pipeline: images/s each training source delivers through its full training pipeline (file reading,
decoding, annotations, flip, packing, collation) with 0, 1 and 2 DataLoader workers, beside the images/s the
model consumes in a training step, and both together (training fed by the loader), so you see which side
limits a run.

uv run python benchmarks/data_pipeline.py                         # configs/quickstart.py, workers 0 1 2
uv run python benchmarks/data_pipeline.py --config mmlab --workers 0 2 --batches 40

Rows: ``loader``: batches drawn from a DataLoader over one source (after its first batch: ``startup_s`` is
the time to the first batch, workers' start included); ``model``: the framework's ``train_step`` (forward,
losses, backward, guard, optimizer) on batches already in memory; ``train``: ``train_step`` fed by the loader
(both sources alternately, as ``round_robin`` draws them). Writes ``benchmarks/results/data_pipeline.json``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quickstart", help="a name of benchmarks/_common.CONFIGS or a path")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=30, help="batches timed per loader (30)")
    p.add_argument("--steps", type=int, default=8, help="training steps timed per model row (8)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's data)")
    p.add_argument("--pin-memory", action="store_true", help="DataLoader pin_memory (for a GPU)")
    p.add_argument("--device", default="cpu")
    C.add_common_args(p)
    return p.parse_args(argv)


def time_loader(loader, batches: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the next ``batches``)."""
    start = time.perf_counter()
    it = iter(loader)
    first = next(it)
    startup = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for data in itertools.islice(it, batches):
        images += len(data["inputs"])
    del first
    return startup, images / (time.perf_counter() - start)


def forever(loader):
    """Batches of ``loader``, epoch after epoch (``itertools.cycle`` would replay cached batches)."""
    while True:
        yield from loader


def train_rate(model, optim, feed, steps: int, device: str) -> float:
    """Images/s of ``model.train_step`` over ``steps`` batches from ``feed`` (after one warm-up step)."""
    model.train_step(next(feed), optim)
    images, start = 0, time.perf_counter()
    for _ in range(steps):
        data = next(feed)
        model.train_step(data, optim)
        images += len(data["inputs"])
    C.sync(device)
    return images / (time.perf_counter() - start)


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    from mmengine.optim import build_optim_wrapper

    before = C.machine(args.device)
    cfg = C.load_config(args.config)
    bs = args.batch or cfg.train_dataloader.batch_size
    sources = C.sized_sources(cfg, args.size, max(64, bs * (args.batches + 2)), args.data_dir)
    model = C.build_model(cfg, args.device)
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    kw = dict(pin_memory=args.pin_memory)
    rows = []
    for source in sources:
        for workers in args.workers:
            loader = C.source_loader(source, bs, workers, **kw)
            startup, rate = time_loader(loader, args.batches)
            rows.append(dict(row="loader", source=source["source_name"], workers=workers,
                             images_per_s=rate, startup_s=startup))  # fmt: skip
            print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
            del loader

    in_memory = [next(iter(C.source_loader(s, bs, 0))) for s in sources]
    rows.append(dict(row="model", source="in memory", workers="-",
                     images_per_s=train_rate(model, optim, itertools.cycle(in_memory), args.steps, args.device)))  # fmt: skip
    print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    for workers in args.workers:
        loaders = [forever(C.source_loader(s, bs, workers, **kw)) for s in sources]
        feed = (next(it) for _ in itertools.count() for it in loaders)
        rows.append(dict(row="train", source="all, alternating", workers=workers,
                         images_per_s=train_rate(model, optim, feed, args.steps, args.device)))  # fmt: skip
        print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
        del loaders, feed
    print()
    print(C.table(rows, COLUMNS))
    return C.finish("data_pipeline", args, before, rows, on=args.device, config=args.config, batch_size=bs)


COLUMNS = ("row", "source", "workers", "images_per_s", "startup_s")

if __name__ == "__main__":
    main()
