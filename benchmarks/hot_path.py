"""What the hot-path changes of issue #14 gained, measured before/after in one process (ABBA).

uv run python benchmarks/hot_path.py                     # quickstart and mmlab, batch 8 of 128x128

Two changes, found by profiling the training step (``cProfile`` of ``train_step``, see benchmarks/README.md):

* the non-finite gradient/buffer check of the step guard took one max-norm (``get_total_norm(inf)``) of all
  gradients, which ``torch._foreach_norm`` computes ~9x slower on CPU than a 2-norm; it now takes a 2-norm
  (``multitask_vision/models/step_guard.py``);
* the optimizer: torch's AdamW defaults to a per-tensor Python loop on CPU; the schedule now asks for
  ``fused=True`` (``configs/_base_/schedules/adamw_iters.py``).

``before``: the framework's ``train_step`` with the previous check (patched in for that variant only) and the
config's AdamW without ``fused``; ``after``: as the code and configs are now. Both on the same model and batches,
alternately. Also the two parts alone on the model's real gradients (median ms). Writes
``benchmarks/results/hot_path.json``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["quickstart", "mmlab"])
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's data)")
    p.add_argument("--rounds", type=int, default=12, help="timed rounds (12)")
    C.add_common_args(p)
    return p.parse_args(argv)


def old_nonfinite_tensors(named_tensors):
    """The step guard's check before issue #14: a max-norm first, then every tensor (kept here to compare)."""
    from multitask_vision.models.step_guard import floating_items

    items = floating_items(named_tensors)
    if not items:
        return []
    peak = torch.nn.utils.get_total_norm([t.detach() for _, t in items], norm_type=math.inf)
    if bool(torch.isfinite(peak)):
        return []
    return [name for name, t in items if not bool(torch.isfinite(t).all())]


def median_ms(fn, n: int = 10) -> float:
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def parts(model, cfg) -> dict[str, float]:
    """The guard's check and the AdamW step alone, on the model's current gradients."""
    from multitask_vision.models import step_guard

    params = [p for p in model.parameters() if p.grad is not None]
    named = [(str(i), p.grad) for i, p in enumerate(params)]
    opt = dict(cfg.optim_wrapper.optimizer)
    opt.pop("type")
    opt.pop("fused", None)
    out = {
        "guard max-norm (before) ms": median_ms(lambda: old_nonfinite_tensors(named)),
        "guard 2-norm (after) ms": median_ms(lambda: step_guard.nonfinite_tensors(named)),
    }
    for label, kw in (
        ("per-tensor (before)", {}),
        ("foreach", {"foreach": True}),
        ("fused (after)", {"fused": True}),
    ):
        optimizer = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params], **opt, **kw)
        for p, q in zip(optimizer.param_groups[0]["params"], params):
            p.grad = q.grad.clone()
        out[f"AdamW step {label} ms"] = median_ms(optimizer.step)
    return out


def measure(name: str, args) -> dict:
    from mmengine.optim import build_optim_wrapper

    from multitask_vision.models import step_guard

    cfg = C.load_config(name)
    model = C.build_model(cfg)
    batches = C.raw_batches(cfg, 2, args.size, args.batch, args.data_dir)
    before_cfg = copy.deepcopy(cfg.optim_wrapper)
    before_cfg.optimizer.pop("fused", None)
    optim_before = build_optim_wrapper(model, before_cfg)
    optim_after = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

    def before(r):
        with mock.patch.object(step_guard, "nonfinite_tensors", old_nonfinite_tensors):
            model.train_step(batches[r % len(batches)], optim_before)

    def after(r):
        model.train_step(batches[r % len(batches)], optim_after)

    times = C.abba({"before": before, "after": after}, args.rounds)
    stats = C.ratio_stats(times["before"], times["after"])
    bs = len(batches[0]["inputs"])
    loss, _ = model.parse_losses(model.loss(*_preprocessed(model, batches[0])))
    loss.backward()
    row = dict(
        config=name,
        batch=bs,
        before_ms=1000 * statistics.median(times["before"]),
        after_ms=1000 * statistics.median(times["after"]),
        speedup=stats["median"],
        speedup_iqr=f"{stats['q1']:.3f}-{stats['q3']:.3f}",
        **parts(model, cfg),
        times=times,
    )
    model.zero_grad(set_to_none=True)
    return row


def _preprocessed(model, data):
    data = model.data_preprocessor(data, True)
    return data["inputs"], data["data_samples"]


COLUMNS = ("config", "batch", "before_ms", "after_ms", "speedup", "speedup_iqr")


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    before = C.machine()
    rows = []
    for name in args.configs:
        rows.append(measure(name, args))
        print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    parts_cols = [k for k in rows[0] if k.endswith(" ms")]
    print()
    print(C.table(rows, COLUMNS))
    print()
    print(C.table(rows, ("config", *parts_cols)))
    return C.finish("hot_path", args, before, rows, rounds=args.rounds)


if __name__ == "__main__":
    main()
