"""The deploy pipeline end to end on the tiny model: every shipped deploy config, parity, the report; bad
inputs (one line, exit code 2, nothing written); deploy.py itself as a subprocess."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, DictAction

from multitask_vision.compression.pipeline import prepare, run_pipeline
from multitask_vision.engine.launch import user_errors
from tests.compression.conftest import ROOT, TINY, TINY_MMLAB, TINY_TIMM, build, run_script

DEPLOY_CONFIGS = sorted((ROOT / "configs").glob("deploy*.py"))
# keep every variant quick: few evaluation samples, few timed runs, short fine-tune, small calibration set
FAST = {
    "evaluation": {"max_samples": 4},
    "benchmark": {"runs": 2, "warmup": 0, "threads": 1},
    "finetune": {"iters": 2, "log_interval": 1},
    "quantization": {"calib_samples": 4},
}


def fast_options(path: Path) -> list[str]:
    cfg = Config.fromfile(str(path))
    opts = []
    for section, keys in FAST.items():
        if cfg.get(section) is None:
            continue
        for key, value in keys.items():
            if section == "quantization" and cfg[section]["method"] != "static":
                continue
            opts.append(f"{section}.{key}={value}")
    return opts


def parse_options(options: tuple[str, ...]) -> dict | None:
    """``key=value`` strings as deploy.py's ``--deploy-options`` parses them (mmengine's DictAction)."""
    p = argparse.ArgumentParser()
    p.add_argument("--options", nargs="+", action=DictAction)
    return p.parse_args(["--options", *options]).options if options else None


def deploy(
    ws: Path, deploy_cfg: Path, *options: str, config: Path = TINY, out: str = "out", ckpt: str = "tiny.pth"
) -> dict:
    """What deploy.py does (library calls), returning the report; user errors exit 2 with one line."""
    with user_errors():
        run = prepare(config, ws / ckpt, deploy_cfg, ws / out, deploy_options=parse_options(options))
    return run_pipeline(run)


@pytest.mark.parametrize("path", DEPLOY_CONFIGS, ids=[p.stem for p in DEPLOY_CONFIGS])
def test_deploy_config_end_to_end(in_workspace, path):
    ws = in_workspace
    returned = deploy(ws, path, *fast_options(path), out=path.stem)
    out = ws / path.stem
    report = json.loads((out / "report.json").read_text())
    assert returned["parity_ok"] and report["parity_ok"]
    md = (out / "report.md").read_text()
    assert md.startswith("# Deployment report")
    # one column per task, its primary metric (the config's Δm baselines), filled for every scored row
    primary = ["detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"]
    assert [m["key"] for m in report["primary_metrics"]] == primary
    assert [m["lower_is_better"] for m in report["primary_metrics"]] == [False, False, True]
    header = next(line for line in md.splitlines() if line.startswith("| stage |"))
    assert header.endswith("| detection/pascal_voc/mAP | segmentation/mIoU | depth/abs_rel ↓ |"), header
    stages = {row["stage"]: row for row in report["stages"]}
    original = stages["original"]
    assert (
        original["metrics"] and original["params"] > 0 and original["macs"] > 0 and original["torch_ms"] > 0
    )
    dc = Config.fromfile(str(path))
    exported = [r for r in report["stages"] if r["stage"].startswith("exported fp32")]
    assert len(exported) == 1
    fp32 = exported[0]
    assert Path(fp32["file"]).is_file() and fp32["parity"]["ok"]
    assert all(v <= 1e-4 for v in fp32["parity"]["max_abs_diff"].values())
    if dc.export.get("blocks"):
        assert all(name.startswith("backbone.") for name in fp32["parity"]["max_abs_diff"])
        assert "metrics" not in fp32
    else:
        # the exported model is scored through the runtime helper: same metrics as the PyTorch model it came from
        torch_rows = [
            r for r in report["stages"] if r.get("torch_ms") is not None and "quantized" not in r["stage"]
        ]
        assert fp32["metrics"].keys() == torch_rows[-1]["metrics"].keys()
        for key, value in torch_rows[-1]["metrics"].items():
            assert fp32["metrics"][key] == pytest.approx(value, abs=1e-3), key
    method = (dc.get("pruning") or {}).get("method")
    pruned = [r for r in report["stages"] if r["stage"].startswith("pruned (")]
    if method == "physical":
        assert pruned[0]["params"] <= 0.75 * original["params"]
        assert pruned[0]["macs"] <= 0.75 * original["macs"]
        assert Path(pruned[0]["file"]).is_file()
        step = next(s for s in report["steps"] if s["step"] == "pruning")
        assert step["reload_max_abs_diff"] == 0.0
    elif method in ("unstructured", "structured"):
        assert pruned[0]["params"] == original["params"]  # zeroed, not removed
        step = next(s for s in report["steps"] if s["step"] == "pruning")
        assert step["weight_sparsity"] > 0.1
    q = dc.get("quantization") or {}
    if q:
        int8 = [r for r in report["stages"] if r["stage"].startswith("exported int8")]
        assert int8, "an int8 file is exported"
        for row in int8:
            assert Path(row["file"]).is_file()
            if q["method"] != "dynamic":  # dynamic keeps per-node activation scaling ops
                assert row["size_mb"] * 3 <= fp32["size_mb"], row["stage"]
            assert row["ort_ms"] > 0
    if q.get("method") in ("static", "qat") and "x86" in q.get("backend", "x86"):
        row = next(r for r in report["stages"] if r["stage"].startswith("quantized"))
        assert row["metrics"] and Path(row["file"]).suffix == ".pt2"


def test_exported_openmmlab_heads_are_scored_by_their_own_decoding(in_workspace):
    """mmdet/mmseg heads have no runtime-helper decoder: the exported file's ONNX Runtime outputs are decoded by
    the heads' own predict_by_feat, so the exported model gets the same metrics as the PyTorch model."""
    ws = in_workspace
    torch.save(dict(meta=dict(), state_dict=build(TINY_MMLAB).state_dict()), ws / "tiny_mmlab.pth")
    (ws / "export_only.py").write_text(
        "export = dict(format='onnx')\nevaluation = dict(max_samples=8)\nbenchmark = dict(runs=2, warmup=0)\n"
    )
    returned = deploy(ws, ws / "export_only.py", config=TINY_MMLAB, out="mmlab", ckpt="tiny_mmlab.pth")
    report = json.loads((ws / "mmlab" / "report.json").read_text())
    assert returned["parity_ok"]
    original, fp32 = report["stages"]
    assert fp32["stage"] == "exported fp32 ONNX" and fp32["parity"]["ok"]
    assert any(name.startswith("det_head.") for name in fp32["parity"]["max_abs_diff"])
    keys = {"detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"}
    assert keys <= original["metrics"].keys() and fp32["metrics"].keys() == original["metrics"].keys()
    for key, value in original["metrics"].items():
        assert fp32["metrics"][key] == pytest.approx(value, abs=1e-3), key
    assert any("['det_head', 'seg_head']" in note and "predict_by_feat" in note for note in report["notes"])


def test_timm_backbone_deploys_end_to_end(in_workspace):
    """A timm backbone (tiny ConvNeXt: LayerNorm2d, layer scale) through configs/deploy.py: physical pruning
    that reloads exactly, fine-tune, PT2E and ONNX Runtime int8, ONNX with ORT parity, scored like the original."""
    ws = in_workspace
    torch.save(dict(meta=dict(), state_dict=build(TINY_TIMM).state_dict()), ws / "tiny_timm.pth")
    path = ROOT / "configs/deploy.py"
    deploy(ws, path, *fast_options(path), config=TINY_TIMM, out="timm", ckpt="tiny_timm.pth")
    report = json.loads((ws / "timm" / "report.json").read_text())
    stages = {row["stage"]: row for row in report["stages"]}
    assert report["parity_ok"] and list(stages) == [
        "original",
        "pruned (physical 0.3)",
        "pruned + fine-tuned 2 it",
        "quantized (static int8, PT2E)",
        "exported fp32 ONNX",
        "exported int8 ONNX (ORT static)",
        "exported int8 ONNX (PT2E)",
    ]
    original, pruned, fp32 = stages["original"], stages["pruned (physical 0.3)"], stages["exported fp32 ONNX"]
    assert pruned["params"] <= 0.75 * original["params"] and pruned["macs"] <= 0.75 * original["macs"]
    assert next(s for s in report["steps"] if s["step"] == "pruning")["reload_max_abs_diff"] == 0.0
    assert fp32["parity"]["ok"] and max(fp32["parity"]["max_abs_diff"].values()) <= 1e-4
    for key, value in stages["pruned + fine-tuned 2 it"]["metrics"].items():
        assert fp32["metrics"][key] == pytest.approx(value, abs=1e-3), key
    for name in (
        "exported int8 ONNX (ORT static)",
        "exported int8 ONNX (PT2E)",
        "quantized (static int8, PT2E)",
    ):
        assert stages[name]["metrics"] and Path(stages[name]["file"]).is_file(), name


@pytest.mark.parametrize(
    "options, message",
    [
        (["pruning.method=magic"], "error: pruning.method must be one of ['physical', 'structured', 'unstructured'], got 'magic'"),
        (["pruning.amount=1.5"], "error: pruning.amount must be a fraction in (0, 1), got 1.5"),
        (["pruning.amount=0"], "error: pruning.amount must be a fraction in (0, 1), got 0"),
        (["pruning.targets=[backbone,nek]"], "error: pruning.targets: unknown block 'nek' (blocks: backbone, neck, det_head, seg_head, depth_head)"),
        (["export.blocks=[backbon]", "export.heads=all"], "error: export.blocks: unknown block 'backbon'"),
        (["quantization.method=int4"], "error: quantization.method must be one of ['dynamic', 'qat', 'static'], got 'int4'"),
        (["quantization.observer=kl"], "error: quantization.observer must be one of ('minmax', 'histogram'), got 'kl'"),
        (["quantization.method=qat"], "error: quantization.observer is not a key of quantization method='qat' (keys: method)"),
        (["pruning.ratio=0.3"], "error: pruning.ratio is not a key of pruning method='physical'"),
        (["export.format=tflite"], "error: export.format must be one of ['onnx', 'torchscript'], got 'tflite'"),
        (["export.format=torchscript"], "error: export.opset is not a key of export format='torchscript'"),
        (["finetune.iters=0"], "error: finetune.iters must be an int >= 1, got 0"),
        (["prunning.amount=0.3"], "error: unknown deploy-config key 'prunning'"),
    ],
)  # fmt: skip
def test_bad_deploy_config_fails_with_one_line(in_workspace, capsys, options, message):
    with pytest.raises(SystemExit) as exc:
        deploy(in_workspace, ROOT / "configs/deploy.py", *options, out="bad")
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1
    assert not (in_workspace / "bad").exists()


def test_deploy_script_missing_checkpoint_names_the_path(in_workspace):
    """deploy.py itself: the config positional, --output (the origin README's spelling) beside --out; a
    missing checkpoint is one line and exit code 2, before any work."""
    missing = in_workspace / "nowhere" / "iter_9.pth"
    args = [str(TINY), "--checkpoint", str(missing), "--deploy-config", str(ROOT / "configs/deploy.py")]
    proc = run_script("deploy.py", [*args, "--output", str(in_workspace / "bad")], cwd=in_workspace)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert [line for line in proc.stderr.splitlines() if "error" in line] == [
        f"error: checkpoint not found: {missing}"
    ]
    assert not (in_workspace / "bad").exists()
