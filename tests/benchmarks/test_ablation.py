"""The ablation script: the equal-labelled-samples budgets it derives, the held-out split it reports on, and a
one-iteration run of a cell and its single-task baselines through the real train.py subprocess path."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_benchmarks import load


@pytest.fixture(scope="module")
def ablation():
    return load("ablation")


def tiny_args(ablation, tmp_path, *extra):
    return ablation.parse_args(
        ["--size", "64", "--num-train", "16", "--workers", "0", "--data-dir", str(tmp_path / "data"),
         "--work-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--threads", "1", *extra]
    )  # fmt: skip


def test_labelled_samples_per_batch_follow_the_sampling(ablation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tiny_args(ablation, tmp_path)
    ablation.setup(1)
    rr = ablation.labelled_per_iter(
        ablation.cell_config(args, "configs/quickstart.py", "round_robin", "fixed")
    )
    # every synthetic VOC image labels detection, 70 % of them segmentation; every NYU image depth + segmentation
    # (16 per source: 11 VOC masks); round robin draws each source in half the batches of 8
    assert rr["detection"] == pytest.approx(4.0) and rr["depth"] == pytest.approx(4.0)
    assert rr["segmentation"] == pytest.approx(4.0 * 11 / 16 + 4.0)
    args.weights = [3.0, 1.0]
    weighted = ablation.cell_config(args, "configs/quickstart.py", "weighted", "fixed")
    w = ablation.labelled_per_iter(weighted)
    assert w["detection"] == pytest.approx(6.0) and w["depth"] == pytest.approx(2.0)
    single = ablation._prepare(ablation._load("configs/single_task/quickstart_detection.py"), args, 10)
    assert ablation.labelled_per_iter(single) == {"detection": pytest.approx(8.0)}  # VOC only, every batch


def test_cell_config_validates_on_one_half_and_reports_the_other(ablation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ablation.setup(1)
    cfg = ablation.cell_config(tiny_args(ablation, tmp_path, "--iters", "40"), "configs/quickstart.py",
                               "temperature", "dwa")  # fmt: skip
    assert cfg.train_cfg.max_iters == 40 and cfg.train_cfg.val_interval == 40
    warmup, cosine = cfg.param_scheduler  # the cosine follows the shortened budget
    full = ablation._load("configs/quickstart.py").train_cfg.max_iters
    assert (warmup.end, cosine.begin, cosine.end) == (100, 100, full)  # (begins after 40: never acts)
    args = tiny_args(ablation, tmp_path, "--iters", "500")
    short = ablation._prepare(ablation._load("configs/single_task/quickstart_depth.py"), args, 250)
    warmup, cosine = short.param_scheduler  # a 250-iteration baseline of a 500-iteration ablation:
    assert (warmup.end, cosine.begin, cosine.end) == (50, 50, 250)  # the same schedule, compressed
    assert short.train_cfg.max_iters == 250
    assert cfg.train_dataloader.batch_sampler == dict(type="MultiSourceBatchSampler", strategy="temperature",
                                                      temperature=2.0)  # fmt: skip
    assert cfg.model.task_weighting == dict(type="DWAWeighting")
    val = [s.holdout for s in cfg.val_dataloader.dataset.sources]
    test = [s.holdout for s in cfg.test_dataloader.dataset.sources]
    assert [h.part for h in val] == ["rest", "rest"] and [h.part for h in test] == ["held", "held"]
    assert [(h.num, h.seed) for h in val] == [(h.num, h.seed) for h in test]  # the same cut: no overlap

    from multitask_vision.registry import DATASETS

    def ids(loader):
        return {(d.source_name, d.get_data_info(i)["img_id"]) for d in DATASETS.build(
            loader.dataset).datasets for i in range(len(d))}  # fmt: skip

    chosen, reported = ids(cfg.val_dataloader), ids(cfg.test_dataloader)
    assert chosen and reported and not chosen & reported


def test_one_iteration_cell_and_baselines_end_to_end(ablation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", "hydranet", "--iters", "1", "--sampling", "proportional", "--weighting", "fixed",
            "--jobs", "2", "--size", "64", "--num-train", "16", "--workers", "0", "--data-dir",
            str(tmp_path / "data"), "--work-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--threads", "1"]  # fmt: skip
    payload = ablation.main(argv)
    assert [r["cell"] for r in payload["rows"]] == ["proportional+fixed"]
    row = payload["rows"][0]
    assert row["error"] is None and row["baseline_iters"] == {"segmentation": 1, "depth": 1}
    assert row["depth_test"] > 0 and 0 <= row["segmentation_test"] <= 100
    runs = tmp_path / "runs" / "hydranet_nyu_1"
    assert sorted(p.name for p in runs.iterdir()) == [
        "proportional+fixed",
        "single_depth_1",
        "single_segmentation_1",
    ]
    single = json.loads((runs / "single_depth_1" / "result.json").read_text())
    # the baseline was trained and tested with its one head only
    assert "depth/abs_rel" in single["test"] and not any(k.startswith("segmentation") for k in single["test"])
    assert (tmp_path / "out" / "ablation_hydranet_nyu.json").is_file()
    # a second call reuses the finished runs instead of training again
    before = {p: p.stat().st_mtime for p in runs.glob("*/result.json")}
    again = ablation.main(argv)
    assert {p: p.stat().st_mtime for p in runs.glob("*/result.json")} == before
    assert again["rows"][0]["depth_test"] == row["depth_test"]
