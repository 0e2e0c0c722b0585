"""The Getting Started commands of the README this project grew from (MultitaskVision, whose commands people
copy) run as written, top to bottom, on generated synthetic data: train the quick native-head model, the
mmdet/mmseg model and its QAT variant, then visualize and deploy the mmdet/mmseg model's ``latest.pth``.

Each command runs as a subprocess in a temporary folder, shortened with ``--cfg-options`` (2 iterations,
8 training and 4 validation images per source at 64x64, no worker processes) and, for deploy.py,
``--deploy-options`` (one fine-tuning iteration, the ONNX Runtime side of the int8 step only, 2 evaluation
samples, one timed run). The origin's other snippets (type names, ``args=``, ``'image'``, ``data=dict(datasets=...)``,
``deploy=dict(...)``) are tested where they are parsed (``tests/test_origin_spellings.py``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the origin README's Getting Started, Train / Visualize / Deploy, in its order and spelling
ORIGIN_COMMANDS = [
    "uv run python train.py --config configs/det_seg_depth_quick.py",
    "uv run python train.py --config configs/det_seg_depth_mmlab.py",
    "uv run python train.py --config configs/det_seg_depth_mmlab_qat.py",
    "uv run python visualize.py --config configs/det_seg_depth_mmlab.py --checkpoint work_dirs_mmlab/latest.pth",
    "uv run python deploy.py --config configs/det_seg_depth_mmlab.py --checkpoint work_dirs_mmlab/latest.pth "
    "--deploy-config configs/deploy.py --output deploy_output/",
]


def short_schedule() -> list[str]:
    """``--cfg-options`` that shrink a synthetic training config to seconds: every source of every loader gets
    the same (tiny) generation parameters, so the data is generated once and shared by all the commands."""
    opts = ["train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.logger.interval=1"]
    for loader, batch in (("train", 2), ("val", 4), ("test", 4)):
        opts += [
            f"{loader}_dataloader.{k}"
            for k in (f"batch_size={batch}", "num_workers=0", "persistent_workers=False")
        ]
        for i in (0, 1):
            opts += [
                f"{loader}_dataloader.dataset.sources.{i}.{k}"
                for k in ("num_train=8", "num_val=4", "image_size=(64,64)")
            ]
    return opts  # fmt: skip


EXTRA = {
    "det_seg_depth_mmlab_qat.py": ["custom_hooks.4.start_iter=1"],  # fake quantization from iteration 1 of 2
    "visualize.py": ["--num", "1"],
    "deploy.py": [
        "--deploy-options", "finetune.iters=1", "finetune.log_interval=1", "quantization.backend=onnxruntime",
        "quantization.calib_samples=2", "evaluation.max_samples=2", "benchmark.runs=1", "benchmark.warmup=0",
    ],
}  # fmt: skip


def as_subprocess(command: str) -> list[str]:
    """``uv run python X.py --config configs/C ...`` -> this interpreter, the repository's script and config."""
    words = shlex.split(command)
    assert words[:3] == ["uv", "run", "python"], command
    script, args = words[3], words[4:]
    args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
    config = Path(args[args.index("--config") + 1]).name
    extra = ["--cfg-options", *short_schedule(), *EXTRA.get(config, [])]
    if script == "deploy.py":
        extra += EXTRA["deploy.py"]
    elif script == "visualize.py":
        extra += EXTRA["visualize.py"]
    return [sys.executable, str(ROOT / script), *args, *extra]


def run(command: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        as_subprocess(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}\n{log[-4000:]}"
    return log


def validated(work_dir: Path) -> dict:
    """The metrics of the last validation (MetricsJSONHook), which ran at the last iteration."""
    history = json.loads((work_dir / "val_metrics.json").read_text())
    assert history[-1]["iter"] == 2
    metrics = history[-1]["metrics"]
    for key in ("detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"):
        assert key in metrics, sorted(metrics)
    return metrics


def latest_is_last_checkpoint(work_dir: Path) -> None:
    latest = work_dir / "latest.pth"
    assert latest.is_file()
    last = Path((work_dir / "last_checkpoint").read_text().strip())
    assert latest.resolve() == last.resolve() and last.name == "iter_2.pth"


@pytest.mark.timeout(1500)  # five fresh interpreters; QAT's int8 conversion alone traces ~100 patterns
def test_origin_getting_started_runs_top_to_bottom(tmp_path):
    quick, mmlab, qat, visualize, deploy = ORIGIN_COMMANDS

    run(quick, tmp_path)  # native heads
    wd = tmp_path / "work_dirs" / "det_seg_depth_quick"
    latest_is_last_checkpoint(wd)
    validated(wd)

    run(mmlab, tmp_path)  # mmdet FCOSHead + mmseg FCNHead; the origin's work dir
    wd = tmp_path / "work_dirs_mmlab"
    latest_is_last_checkpoint(wd)
    validated(wd)

    log = run(qat, tmp_path)  # QAT with the mmdet/mmseg heads, validation and its hooks kept
    wd = tmp_path / "work_dirs_mmlab_qat"
    assert "QATHook: iter 1: fake quantization in" in log
    assert (wd / "qat_int8.pt2").is_file()
    validated(wd)  # the fake-quantized model was scored
    assert list((wd / "vis" / "iter_2").rglob("*.png")) and (wd / "curves.png").is_file()

    log = run(visualize, tmp_path)  # the mmlab model's latest.pth
    grids = sorted(
        p.relative_to(tmp_path) for p in (tmp_path / "work_dirs_mmlab" / "vis").glob("synthetic_*/*.png")
    )
    assert [str(p) for p in grids] == [
        "work_dirs_mmlab/vis/synthetic_nyu/val_000000.png",
        "work_dirs_mmlab/vis/synthetic_voc/val_000000.png",
    ], log[-2000:]

    run(deploy, tmp_path)
    report = json.loads((tmp_path / "deploy_output" / "report.json").read_text())
    assert report["parity_ok"]
    stages = [row["stage"] for row in report["stages"]]
    assert stages[0] == "original" and any(s.startswith("exported int8") for s in stages), stages
    assert (tmp_path / "deploy_output" / "model_fp32.onnx").is_file()
