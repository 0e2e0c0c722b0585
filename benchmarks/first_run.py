"""Wall time of a first run (issue #14 item 5): ``train.py --config <config>`` as a user types it, started in
a fresh directory so that the synthetic data is generated as on a new machine, timed from process start to
exit, with the run's last validation metrics and Δm. Configs run one after another, never side by side (a
wall-time measurement), each with torch's default threads unless ``--threads``; the load average before and
after each run is recorded beside it (only a quiet machine gives a meaningful time).

uv run python benchmarks/first_run.py [--configs configs/quickstart.py configs/quickstart_resnet18.py]
    [--cfg-options train_cfg.max_iters=100 ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/quickstart.py"], help="config files, in turn")
    p.add_argument("--cfg-options", nargs="+", default=[], help="train.py --cfg-options for every run")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: torch's)")
    p.add_argument("--keep", default=None, help="run in DIR/<config name>/ and keep it (default: a temp dir)")
    p.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    p.add_argument("--name", default=None, help="results file name without .json (default first_run)")
    return p.parse_args(argv)


def first_run(config: Path, run_dir: Path, cfg_options: list[str], threads: int | None) -> dict:
    """One ``train.py`` process in the empty ``run_dir`` (its working directory: relative data roots and the
    work dir land there); its wall time, iterations, data generated, last validation and load averages."""
    run_dir.mkdir(parents=True, exist_ok=False)
    work_dir = run_dir / "work_dir"
    cmd = [sys.executable, str(C.ROOT / "train.py"), "--config", str(config), "--work-dir", str(work_dir)]
    if cfg_options:
        cmd += ["--cfg-options", *cfg_options]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    with open(run_dir / "run.log", "w") as log:
        proc = subprocess.run(cmd, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    row = dict(config=str(config.relative_to(C.ROOT) if config.is_relative_to(C.ROOT) else config))
    row.update(
        wall_s=round(wall, 1), load_before=load_before, load_after=[round(x, 2) for x in os.getloadavg()]
    )
    if proc.returncode:
        raise RuntimeError(f"{row['config']}: train.py exited {proc.returncode}; see {run_dir / 'run.log'}")
    history = json.loads((work_dir / "val_metrics.json").read_text())
    row.update(
        iters=history[-1]["iter"],
        data_files_generated=sum(1 for p in (run_dir / "data").rglob("*") if p.is_file()),
        metrics=history[-1]["metrics"],
    )
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    configs = [Path(c).resolve() for c in args.configs]
    missing = [str(c) for c in configs if not c.is_file()]
    if missing:
        raise SystemExit(f"first_run.py: no such config: {', '.join(missing)}")
    before = C.machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="first_run_") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for config in configs:
            rows.append(first_run(config, root / config.stem, args.cfg_options, args.threads))
            print(f"{rows[-1]['config']}: {rows[-1]['wall_s']} s", flush=True)
    columns = ["config", "wall_s", "iters"]
    keys = [k for k in rows[0]["metrics"] if k.endswith(("/mAP", "/mIoU", "/abs_rel", "/delta_m"))]
    print(C.table([dict(r, **{k: r["metrics"].get(k) for k in keys}) for r in rows], columns + keys))
    return C.finish("first_run", args, before, rows, cfg_options=args.cfg_options, threads=args.threads)


if __name__ == "__main__":
    main()
