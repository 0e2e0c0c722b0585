"""Smoke tests of the benchmark scripts: each runs on a tiny setting (64x64 images, batch 2, a round or two)
through its ``main(argv)`` and writes its JSON. No timing is asserted; what is checked would catch a script
that measures the wrong thing (a hand-written model that computes another loss, a loader that drops batches)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the scripts chdir to the repository root; this restores the cwd after
    return ["--threads", "1", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")]


@pytest.mark.parametrize("config", ["quickstart", "mmlab", "hydranet"])
def test_graph_overhead_compares_the_same_computation(config, tiny, tmp_path):
    payload = load("graph_overhead").main(
        ["--configs", config, "--sizes", "64", "--batch", "2", "--rounds", "2", *tiny]
    )
    rows = payload["rows"]
    assert [r["phase"] for r in rows] == ["train", "infer"]
    for row in rows:
        assert row["size"] == "64x64" and row["batch"] == 2
        # the hand-written model and the framework computed the same loss on the same batch
        assert row["loss_gap"] < 1e-4
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0
        assert len(row["times"]["hand"]) == len(row["times"]["framework"]) == 2
    saved = json.loads((tmp_path / "out" / "graph_overhead.json").read_text())
    assert saved["machine"]["cpu"] and saved["rows"][0]["config"] == config


def test_data_pipeline_rows_per_source_and_worker_count(tiny, tmp_path):
    payload = load("data_pipeline").main(
        ["--size", "64", "--batch", "2", "--batches", "3", "--steps", "1", "--workers", "0", "1", *tiny]
    )
    loaders = [(r["source"], r["workers"]) for r in payload["rows"] if r["row"] == "loader"]
    assert loaders == [(s, w) for s in ("synthetic_voc", "synthetic_nyu") for w in (0, 1)]
    trains = [r["workers"] for r in payload["rows"] if r["row"] == "train"]
    assert trains == [0, 1]
    assert all(r["images_per_s"] > 0 for r in payload["rows"])
    assert (tmp_path / "out" / "data_pipeline.json").is_file()


def test_train_throughput_runs_fp32_and_cpu_autocast(tiny):
    """bf16 autocast on CPU goes through the model's fp32 head losses (mmdet's FCOSHead in the mmlab model)."""
    payload = load("train_throughput").main(
        ["--configs", "mmlab", "--variants", "fp32", "bf16", "--size", "64", "--batch", "2", "--rounds", "1",
         "--warmup", "0", "--device", "cpu", *tiny]
    )  # fmt: skip
    rows = payload["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "bf16"]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert row["hand_img_s"] > 0 and row["framework_img_s"] > 0


def test_hot_path_before_and_after_train_the_same_model(tiny):
    payload = load("hot_path").main(
        ["--configs", "quickstart", "--size", "64", "--batch", "2", "--rounds", "1", *tiny]
    )
    row = payload["rows"][0]
    assert row["batch"] == 2 and len(row["times"]["before"]) == len(row["times"]["after"]) == 1
    assert {"guard max-norm (before) ms", "guard 2-norm (after) ms", "AdamW step fused (after) ms"} <= set(
        row
    )


def test_old_guard_check_kept_for_comparison_agrees_with_the_new_one():
    """hot_path.py times the previous check against the current one: both must name the same tensors."""
    from multitask_vision.models.step_guard import nonfinite_tensors

    old = load("hot_path").old_nonfinite_tensors
    cases = [[("a", torch.ones(3))], [("a", torch.ones(3)), ("b", torch.tensor([float("nan")]))]]
    cases.append([("big", torch.full((2,), 1e30)), ("inf", torch.tensor([float("inf")]))])
    for named in cases:
        assert old(named) == nonfinite_tensors(named)


def test_scaling_sweeps_and_plots(tiny, tmp_path):
    payload = load("scaling").main(
        [
            "--batches",
            "1",
            "2",
            "--sides",
            "64",
            "--base-side",
            "64",
            "--base-batch",
            "1",
            "--steps",
            "1",
            *tiny,
        ]
    )
    assert [(r["sweep"], r["side"], r["batch"]) for r in payload["rows"]] == [
        ("batch", 64, 1), ("batch", 64, 2), ("side", 64, 1)
    ]  # fmt: skip
    assert (tmp_path / "out" / "scaling_quickstart.png").stat().st_size > 1000


def test_deploy_latency_rows_and_int8_files(tiny):
    payload = load("deploy_latency").main(
        ["--size", "64", "--batch-sizes", "1", "--int8", "qdq", "--rounds", "1", "--runs", "1",
         "--calib-batches", "2", "--no-extra", "--no-original", *tiny]
    )  # fmt: skip
    rows = {r["row"]: r for r in payload["rows"]}
    assert set(rows) == {"torch eager pruned", "ORT fp32 pruned", "ORT int8 pruned (qdq)"}
    assert rows["ORT fp32 pruned"]["speedup_vs_pruned_fp32"] == 1.0
    # the int8 file holds int8 weights (fp32 biases and scales): well under half of the fp32 file
    assert rows["ORT int8 pruned (qdq)"]["size_mb"] < rows["ORT fp32 pruned"]["size_mb"] / 2.5


def test_trunks_compares_lighter_trunks_on_the_same_batches(tiny):
    payload = load("trunks").main(
        ["--trunks", "resnet18", "mobilenet_v2", "--size", "64", "--batch", "2", "--rounds", "1", *tiny]
    )
    rows = {r["trunk"]: r for r in payload["rows"]}
    assert rows["resnet18"]["speedup_vs_first"] == 1.0
    assert rows["mobilenet_v2"]["params_m"] < rows["resnet18"]["params_m"] / 3


def test_first_run_times_train_py_from_a_fresh_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = BENCH.parent / "tests" / "configs" / "tiny_quickstart.py"
    out, runs = tmp_path / "out", tmp_path / "runs"
    payload = load("first_run").main(
        ["--configs", str(config), "--keep", str(runs), "--threads", "1", "--out", str(out)]
    )
    (row,) = payload["rows"]
    assert row["config"] == "tests/configs/tiny_quickstart.py" and row["wall_s"] > 0
    assert row["iters"] == 4  # the last validation is the end of tiny_quickstart's training
    assert row["data_files_generated"] > 0  # a fresh directory: the run generated its synthetic data
    assert (runs / "tiny_quickstart" / "work_dir" / "iter_4.pth").is_file()
    assert {"detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"} <= set(row["metrics"])
    assert json.loads((out / "first_run.json").read_text())["rows"] == payload["rows"]
    with pytest.raises(SystemExit, match="no such config: .*nope.py"):
        load("first_run").main(["--configs", "nope.py", "--out", str(out)])


def test_gpu_check_calls_the_scripts_with_options_they_accept():
    """gpu_check.sh is run rarely (on a lent GPU): its every benchmark call must parse, so that it does not fail
    there on a renamed option."""
    import re
    import shlex
    import subprocess

    script = BENCH / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    common = re.search(r"^COMMON=\((.*)\)$", text, re.M).group(1)
    calls = re.findall(r"benchmarks/(\w+)\.py (.*)$", text, re.M)
    assert {name for name, _ in calls} == {"train_throughput", "graph_overhead"}
    for name, rest in calls:
        args = shlex.split(rest.replace('"${COMMON[@]}"', common).replace('"$DEST"', "out"))
        parsed = load(name).parse_args(args)
        assert parsed.device == "cuda"
