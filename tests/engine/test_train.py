"""train.py end to end on tiny synthetic data: train, checkpoint, resume, 2-process gloo, bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from multitask_vision.utils.checkpoint import checkpoint_safe_globals

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/configs/tiny_quickstart.py"


def run(args, cwd, env_extra=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)


def train(cwd, *extra):
    return run(
        [sys.executable, str(ROOT / "train.py"), "--config", str(TINY), "--work-dir", "wd", *extra], cwd
    )


def load_ckpt(path):
    with checkpoint_safe_globals():
        return torch.load(path, map_location="cpu")


def test_train_then_resume_continues_from_same_iteration(tmp_path):
    first = train(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    wd = tmp_path / "wd"
    ck4 = load_ckpt(wd / "iter_4.pth")
    assert ck4["meta"]["iter"] == 4
    # latest.pth beside mmengine's last_checkpoint, following it (LatestCheckpointHook)
    assert os.readlink(wd / "latest.pth") == "iter_4.pth"
    assert (wd / "last_checkpoint").read_text().strip().endswith("iter_4.pth")
    # validation ran at the end with all three metric families
    assert "detection/pascal_voc/mAP" in first.stdout + first.stderr
    assert "segmentation/mIoU" in first.stdout + first.stderr
    assert "depth/abs_rel" in first.stdout + first.stderr
    history = json.loads((wd / "val_metrics.json").read_text())  # MetricsJSONHook
    metrics = history[-1]["metrics"]
    assert history[-1]["iter"] == 4 and "segmentation/mIoU" in metrics
    # the quickstart's single-task baselines give Δm, computed from the logged metrics
    baselines = Config.fromfile(TINY).val_evaluator.baselines
    assert set(baselines) == {"detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"}
    terms = [(-1 if k == "depth/abs_rel" else 1) * (metrics[k] - b) / b for k, b in baselines.items()]
    expected = 100 * sum(terms) / len(terms)
    assert metrics["multitask/delta_m"] == pytest.approx(expected)

    second = train(tmp_path, "--resume", "--cfg-options", "train_cfg.max_iters=6")
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert "resumed epoch: 0, iter: 4" in log
    assert (
        "--resume restores the parameter schedulers" in log
    )  # the longer run keeps the checkpoint's schedule
    assert "Iter(train) [5/6]" in log and "Iter(train) [1/6]" not in log
    ck6 = load_ckpt(wd / "iter_6.pth")
    assert ck6["meta"]["iter"] == 6
    assert os.readlink(wd / "latest.pth") == "iter_6.pth"
    # the optimizer state came back too (AdamW step counts continue)
    step4 = next(iter(ck4["optimizer"]["state"].values()))["step"]
    step6 = next(iter(ck6["optimizer"]["state"].values()))["step"]
    assert float(step6) == float(step4) + 2


def test_voc_nyu_config_trains_on_real_sized_images(tmp_path):
    """The VOC + NYUv2 config (two segmentation tasks, mmdet/mmseg heads) on synthetic data in both layouts at
    real image sizes: batches from either source train, and every task is validated."""
    cfg = ROOT / "tests/configs/tiny_voc_nyu.py"
    proc = run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--work-dir", "wd"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    metrics = json.loads((tmp_path / "wd" / "val_metrics.json").read_text())[-1]["metrics"]
    for key in ("detection/pascal_voc/mAP", "seg_voc/mIoU", "seg_nyu/mIoU", "depth/abs_rel"):
        assert key in metrics, sorted(metrics)


def test_timm_backbone_config_trains_and_validates(tmp_path):
    """configs/timm_convnext_atto_quickstart.py shrunk (timm's tiny test ConvNeXt, random init): the Runner trains
    the timm block (its weights move), checkpoints it and validates every task."""
    cfg = ROOT / "tests/configs/tiny_timm_quickstart.py"
    args = [sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--work-dir", "wd"]
    proc = run(args, tmp_path, env_extra=dict(HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    metrics = json.loads((tmp_path / "wd" / "val_metrics.json").read_text())[-1]["metrics"]
    assert {"detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"} <= metrics.keys()
    ck2, ck4 = (load_ckpt(tmp_path / "wd" / f"iter_{i}.pth")["state_dict"] for i in (2, 4))
    backbone = [k for k in ck4 if k.startswith("blocks.backbone.")]
    assert "blocks.backbone.stages_1.blocks.0.conv_dw.weight" in backbone  # timm's features model, by stage
    assert not all(torch.equal(ck2[k], ck4[k]) for k in backbone)


def test_two_process_gloo_training(tmp_path):
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29617",
        str(ROOT / "train.py"), "--config", str(ROOT / "tests/configs/tiny_ddp.py"), "--work-dir", "wd",
        "--launcher", "pytorch",
    ]  # fmt: skip
    proc = run(args, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    probes = [json.loads((tmp_path / "wd" / f"probe_rank{r}.json").read_text()) for r in range(2)]
    assert all(p["world_size"] == 2 for p in probes)
    # DDP kept the replicas identical, and the ranks trained on different samples
    assert probes[0]["checksum"] == pytest.approx(probes[1]["checksum"], rel=0, abs=1e-6)
    assert len(probes[0]["seen"]) == len(probes[1]["seen"]) == 6
    assert not set(probes[0]["seen"]) & set(probes[1]["seen"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("model.blocks.0.type=ResNett", "error: block 'backbone': unknown block type 'ResNett'; close matches:"),
        ("model.blocks.1.inputs=[backbone.layer3,backbon.layer4]",
         "error: block 'neck' input 'backbon.layer4': no block named 'backbon'"),
        ("model.blocks.0.inputs=neck", "error: the block graph has a cycle: backbone -> neck -> backbone"),
    ],
)  # fmt: skip
def test_bad_config_fails_before_training_with_one_line(tmp_path, override, match):
    proc = train(tmp_path, "--cfg-options", override)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(match), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # failed before touching data


def test_missing_config_file(tmp_path):
    proc = run([sys.executable, str(ROOT / "train.py"), "--config", "nope.py"], tmp_path)
    assert proc.returncode == 2 and "error: config file not found: nope.py" in proc.stderr
