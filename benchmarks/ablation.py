"""When does sharing a trunk pay? Trains a multi-task config under each batch-sampling strategy and task
weighting (same seed, same budget), its single-task baselines, and writes a table: each task's primary metric,
Δm against the baselines at an equal number of iterations and at an equal number of labelled samples per task,
and the wall time of every run.

    uv run python benchmarks/ablation.py --config quickstart --iters 500            # the one-way grid
    uv run python benchmarks/ablation.py --config quickstart --grid full --jobs 2   # every pairing
    uv run python benchmarks/ablation.py --config hydranet --sampling proportional --weighting fixed \\
        --variant crp_bn model.blocks.1.crp_norm=True                                 # + a config variant

Model selection is honest: the validation split is cut in two (seeded, ``holdout``): one half (``val``)
chooses the best setting, the other (``test``, never seen while choosing) is what the table reports. A config
with its own test split keeps it. Every run is a ``train.py`` subprocess in ``<work-dir>/<run>/`` (its config,
log, metrics); a run whose ``result.json`` matches its config is reused, so an interrupted ablation continues.

Equal labelled samples: a head learns from the samples labelled for its task, and homogeneous batches label a
task in only some of them. For each cell and task, the script counts the labelled samples the training
batches hold (the run's own seeded batch sampler) and trains the single-task baseline for as many iterations
as give it the same count (with its schedule shortened to match).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, add_common_args, finish, machine, setup, table

CONFIGS = {
    "quickstart": ("configs/quickstart.py", "configs/single_task/quickstart_{task}.py"),
    "hydranet": ("configs/hydranet_nyu.py", "configs/single_task/hydranet_{task}.py"),
}
SAMPLINGS = ("round_robin", "proportional", "weighted", "temperature")
WEIGHTINGS = {
    "fixed": "FixedTaskWeighting",
    "uncertainty": "UncertaintyWeighting",
    "dwa": "DWAWeighting",
    "pcgrad": "PCGradWeighting",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quickstart", help=f"{' | '.join(CONFIGS)} or a config path")
    p.add_argument(
        "--single-task", nargs="+", help="baseline configs (default: the config's own, see CONFIGS)"
    )
    p.add_argument("--iters", type=int, default=500, help="training iterations of every cell (500)")
    p.add_argument("--grid", choices=["oneway", "full"], default="oneway",
                   help="oneway: every sampling with the first weighting + every weighting with the first "
                   "sampling; full: every pairing")  # fmt: skip
    p.add_argument("--sampling", nargs="+", choices=SAMPLINGS, default=list(SAMPLINGS))
    p.add_argument("--weighting", nargs="+", choices=list(WEIGHTINGS), default=list(WEIGHTINGS))
    p.add_argument("--weights", type=float, nargs="+", default=[2.0, 1.0],
                   help="per-source weights of 'weighted' (2 1: the first source in 2 of 3 batches)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=2.0, help="of 'temperature' sampling (2.0)")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="an extra cell: the first sampling and weighting with these config options")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the runs and their budgets, train nothing")
    p.add_argument("--heldout", type=float, default=0.5, help="share of the validation images held out (0.5)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each with --threads threads)")
    p.add_argument("--work-dir", default="work_dirs/ablation", help="runs go to <work-dir>/<config>_<iters>/")
    p.add_argument("--size", type=int, default=None, help="synthetic image side (default: the config's)")
    p.add_argument("--num-train", type=int, default=None, help="with --size: images per source and split")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers (default: the config's)")
    add_common_args(p, threads=None)
    args = p.parse_args(argv)
    if args.num_train is not None and args.size is None:
        p.error("--num-train sets the size of the data --size generates; give --size too")
    return args


# ---- configs of the runs ----------------------------------------------------------------------------------------
def _sources(loader) -> list:
    return list(loader.dataset.sources)


def _prepare(cfg, args, iters: int):
    """The shared edits of every run: budget, one validation at the end, the held-out split, data size."""
    from multitask_vision.engine.launch import _follow_schedule_length, _schedule_lengths

    before = _schedule_lengths(cfg)
    cfg.train_cfg.max_iters = args.iters
    _follow_schedule_length(cfg, before)
    if iters != args.iters:  # a baseline matching fewer labelled samples: the same schedule, compressed
        for sched in cfg.get("param_scheduler") or []:
            if not sched.get("by_epoch", True):
                for key in ("begin", "end"):
                    if key in sched:
                        sched[key] = max(key == "end", round(sched[key] * iters / args.iters))
        cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.update(interval=iters, save_best=None, max_keep_ckpts=1)
    cfg.default_hooks.checkpoint.pop("rule", None)
    cfg.randomness = dict(seed=0)
    if cfg.test_dataloader == cfg.val_dataloader:  # no test split of its own: hold out part of validation
        cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
        for loader, part in ((cfg.val_dataloader, "rest"), (cfg.test_dataloader, "held")):
            for src in _sources(loader):
                src["holdout"] = dict(num=args.heldout, seed=0, part=part)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        if args.workers is not None:
            loader.num_workers, loader.persistent_workers = args.workers, args.workers > 0
        for src in _sources(loader):
            if args.size and "image_size" in src:
                root = src["data_root"].rstrip("/")
                if args.data_dir:
                    root = str(Path(args.data_dir) / Path(root).name)
                src.update(image_size=(args.size, args.size), data_root=f"{root}_{args.size}")
                src.update(num_train=args.num_train or 64, num_val=args.num_train or 64)
    return cfg


def _load(path: str, options: dict | None = None):
    from multitask_vision.engine.launch import load_config

    return load_config(path, options)


def cell_config(args, base: str, sampling: str, weighting: str, options: dict | None = None):
    cfg = _prepare(_load(base, options), args, args.iters)
    sampler = dict(type="MultiSourceBatchSampler", strategy=sampling)
    if sampling == "weighted":
        sampler["weights"] = list(args.weights)
    elif sampling == "temperature":
        sampler["temperature"] = args.temperature
    cfg.train_dataloader.batch_sampler = sampler
    cfg.model.task_weighting = dict(type=WEIGHTINGS[weighting])
    return cfg


def heads(cfg) -> dict[str, None]:
    return {b["task"]: None for b in cfg.model.blocks if b.get("task")}


def primary_keys(cfg) -> dict[str, str]:
    return {m["task"]: f"{m['task']}/{m['primary']}" for m in cfg.val_evaluator.metrics}


def labelled_per_iter(cfg) -> dict[str, float]:
    """Expected labelled samples per task in one training batch: the share of batches the run's batch sampler
    draws from each source (its exact per-epoch counts for round_robin and proportional, its probabilities for
    weighted and temperature) times the batch size times the share of each source's samples labelled for the
    task."""
    import numpy as np

    from multitask_vision.registry import DATA_SAMPLERS, DATASETS

    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    sampler = DATA_SAMPLERS.build(
        copy.deepcopy(cfg.train_dataloader.sampler), default_args=dict(dataset=dataset, seed=0)
    )
    batch_size = cfg.train_dataloader.batch_size
    batches = DATA_SAMPLERS.build(
        copy.deepcopy(cfg.train_dataloader.batch_sampler),
        default_args=dict(sampler=sampler, batch_size=batch_size),
    )
    if batches.strategy in ("weighted", "temperature"):
        share = np.asarray(batches.probs)
    else:
        share = np.bincount(batches.source_sequence(0), minlength=len(dataset.datasets)) / len(batches)
    out = dict.fromkeys(heads(cfg), 0.0)
    for p, ds in zip(share, dataset.datasets):
        for task in out:
            labelled = sum(task in ds.get_data_info(i)["tasks"] for i in range(len(ds)))
            out[task] += float(p) * batch_size * labelled / len(ds)
    return out


# ---- running ----------------------------------------------------------------------------------------------------
def run(cfg, run_dir: Path, threads: int | None) -> dict:
    """Train ``cfg`` in ``run_dir`` (a subprocess), evaluate on its test split; reuse a finished run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = cfg.pretty_text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    result_path = run_dir / "result.json"
    if result_path.is_file():
        cached = json.loads(result_path.read_text())
        if cached.get("config_sha") == digest:
            return cached
    (run_dir / "config.py").write_text(text)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with open(run_dir / "run.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_run", str(run_dir)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode:
        return dict(error=f"exit {proc.returncode}; see {run_dir / 'run.log'}", wall_s=wall)
    val = json.loads((run_dir / "val_metrics.json").read_text())[-1]["metrics"]
    test = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
    result = dict(config_sha=digest, val=val, test=test, wall_s=round(wall, 1), load_avg=os.getloadavg())
    result_path.write_text(json.dumps(result, indent=2))
    return result


def _train_and_test(run_dir: str) -> None:
    """The subprocess: train ``<run_dir>/config.py``, then test the trained model on the test split."""
    sys.path.insert(0, str(ROOT))
    import train

    args = train.parse_args(["--config", f"{run_dir}/config.py", "--work-dir", run_dir])
    runner = train.build_runner(args)
    runner.train()
    runner.test()


def delta_m(metrics: dict, baselines: dict) -> float | None:
    from multitask_vision.evaluation import delta_m as dm

    if any(k not in metrics or not baselines.get(k) for k in baselines):  # missing, or 0: no relative change
        return None
    return dm(metrics, baselines)


def plan(args) -> dict:
    """The cells, the baseline runs they need ``{(task, iterations): config}`` and each cell's equal-labelled
    baseline budgets ``{cell: {task: iterations}}``."""
    base, single = CONFIGS.get(args.config, (args.config, None))
    singles = args.single_task or ([single.format(task=t) for t in heads(_load(base))] if single else [])
    if not singles:
        raise SystemExit(f"--single-task: name the baseline configs of {base}")
    cells = {}
    for s, w in itertools.product(args.sampling, args.weighting):
        if args.grid == "full" or s == args.sampling[0] or w == args.weighting[0]:
            cells[f"{s}+{w}"] = cell_config(args, base, s, w)
    for name, *opts in args.variant:
        from mmengine.config import DictAction

        options = {k: DictAction._parse_iterable(v) for k, v in (o.split("=", 1) for o in opts)}
        cells[name] = cell_config(args, base, args.sampling[0], args.weighting[0], options)
    singles_cfg, per_iter = {}, {}
    for path in singles:
        cfg = _prepare(_load(path), args, args.iters)
        (task,) = heads(cfg)
        singles_cfg[task], per_iter[task] = path, labelled_per_iter(cfg)[task]
    baselines = {(t, args.iters): _prepare(_load(p), args, args.iters) for t, p in singles_cfg.items()}
    equal: dict[str, dict[str, int]] = {}
    for name, cfg in cells.items():
        # the same expected count of labelled samples, in steps of 10 iterations so that cells share baselines
        step = 10 if args.iters >= 20 else 1
        equal[name] = {
            t: max(1, round(args.iters * v / per_iter[t] / step) * step)
            for t, v in labelled_per_iter(cfg).items()
            if t in per_iter
        }
        for task, n in equal[name].items():
            if (task, n) not in baselines:
                baselines[(task, n)] = _prepare(_load(singles_cfg[task]), args, n)
    return dict(base=base, singles=singles, cells=cells, baselines=baselines, equal=equal)


def report(args, runs: dict, results: dict) -> dict:
    """Rows (per-task metrics and Δm of every cell on both halves), the best cell by validation Δm, the
    baselines' metrics."""
    keys = primary_keys(next(iter(runs["cells"].values())))

    def base_value(task: str, n: int | None, split: str):
        r = results.get(f"single_{task}_{n}", {})
        return r.get(split, {}).get(keys[task])

    rows = []
    for name in runs["cells"]:
        r, equal = results[name], runs["equal"][name]
        row = dict(cell=name, wall_s=r.get("wall_s"), error=r.get("error"), baseline_iters=equal)
        for split in ("val", "test"):
            metrics = r.get(split, {})
            for t, k in keys.items():
                row[f"{t}_{split}"] = metrics.get(k)
            row[f"dm_iters_{split}"] = delta_m(
                metrics, {keys[t]: base_value(t, args.iters, split) for t in keys}
            )
            row[f"dm_samples_{split}"] = delta_m(
                metrics, {keys[t]: base_value(t, equal.get(t), split) for t in keys}
            )
        rows.append(row)
    scored = [r for r in rows if r["dm_iters_val"] is not None]
    baselines = {
        f"{t}@{n}": {s: base_value(t, n, s) for s in ("val", "test")}
        | {"wall_s": results[f"single_{t}_{n}"].get("wall_s")}
        for (t, n) in sorted(runs["baselines"])
    }
    best = max(scored, key=lambda r: r["dm_iters_val"])["cell"] if scored else None
    return dict(keys=keys, rows=rows, baselines=baselines, best=best)


def main(argv=None) -> dict:
    args = parse_args(argv)
    setup(args.threads)
    before = machine()
    runs = plan(args)
    out = Path(args.work_dir) / f"{Path(runs['base']).stem}_{args.iters}"
    jobs = {name: (cfg, out / name) for name, cfg in runs["cells"].items()}
    jobs |= {f"single_{t}_{n}": (cfg, out / f"single_{t}_{n}") for (t, n), cfg in runs["baselines"].items()}
    if args.dry_run:
        for j, (cfg, path) in jobs.items():
            print(f"{j:32s} {cfg.train_cfg.max_iters:6d} iterations -> {path}")
        return {}
    order = sorted(jobs, key=lambda j: -jobs[j][0].train_cfg.max_iters)  # longest first
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = dict(zip(order, pool.map(lambda j: run(*jobs[j], args.threads), order)))
    result = report(args, runs, results)
    columns = [
        "cell",
        *[f"{t}_test" for t in result["keys"]],
        "dm_iters_test",
        "dm_samples_test",
        "dm_iters_val",
    ]
    text = table(result["rows"], [*columns, "wall_s"])
    print(text)
    print(f"best by validation Δm (equal iterations): {result['best']}")
    rows = result.pop("rows")
    extra = dict(config=runs["base"], single_task=runs["singles"], iters=args.iters, grid=args.grid)
    name = f"ablation_{Path(runs['base']).stem}"
    return finish(
        "ablation", args, before, rows, name=name, **extra, heldout=args.heldout, **result, table=text
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_run":
        _train_and_test(sys.argv[2])
    else:
        main()
