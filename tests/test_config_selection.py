"""Model selection in the shipped configs: best checkpoints by metrics the evaluator produces, and NYUv2
validated on images held out of its training split, never on its test split."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.py") if "_base_" not in p.parts)
TRAINING = [p for p in CONFIGS if "model" in Config.fromfile(p)]


def metric_tasks(evaluator) -> set[str]:
    metrics = evaluator.get("metrics", evaluator) if isinstance(evaluator, dict) else evaluator
    return {m["task"] for m in metrics}


@pytest.mark.parametrize("path", TRAINING, ids=[p.stem for p in TRAINING])
def test_save_best_names_metrics_the_evaluator_gives(path):
    cfg = Config.fromfile(path)
    save_best = cfg.default_hooks.checkpoint.get("save_best")
    assert save_best, f"{path.name}: no best checkpoint is kept"
    tasks = metric_tasks(cfg.val_evaluator)
    for key in [save_best] if isinstance(save_best, str) else save_best:
        if key == "multitask/delta_m":  # Δm exists only with a baseline for every task's metric
            assert cfg.val_evaluator.get("baselines"), f"{path.name}: save_best Δm without baselines"
        else:
            assert key.split("/")[0] in tasks, (
                f"{path.name}: save_best {key!r} is no metric of {sorted(tasks)}"
            )


def nyu_sources(loader) -> list[dict]:
    return [s for s in loader.dataset.sources if s["type"] == "NYUv2Dataset"]


@pytest.mark.parametrize("name", ["det_seg_depth_mmlab_voc_nyu.py", "hydranet_nyuv2.py"])
def test_nyuv2_validates_on_a_holdout_of_train_and_tests_on_the_test_split(name):
    cfg = Config.fromfile(Path(__file__).parents[1] / "configs" / name)
    (train,), (val,), (test,) = (nyu_sources(cfg[f"{s}_dataloader"]) for s in ("train", "val", "test"))
    assert (
        train["split"] == val["split"] == "train" and test["split"] == "val"
    )  # val.txt: the 654 test images
    assert "holdout" not in test
    assert (train["holdout"]["part"], val["holdout"]["part"]) == ("rest", "held")
    assert {k: v for k, v in train["holdout"].items() if k != "part"} == {
        k: v for k, v in val["holdout"].items() if k != "part"
    }
