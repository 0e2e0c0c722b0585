"""Model selection in the shipped configs: best checkpoints by metrics the evaluator produces, and NYUv2
validated on images held out of its training split, never on its test split."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from multitask_vision.evaluation.evaluator import check_model_selection
from multitask_vision.utils.errors import UserError

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.py") if "_base_" not in p.parts)
TRAINING = [p for p in CONFIGS if "model" in Config.fromfile(p)]


@pytest.mark.parametrize("path", TRAINING, ids=[p.stem for p in TRAINING])
def test_save_best_names_metrics_the_evaluator_gives(path):
    cfg = Config.fromfile(path)
    assert cfg.default_hooks.checkpoint.get("save_best"), f"{path.name}: no best checkpoint is kept"
    check_model_selection(cfg)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"val_evaluator.baselines": None}, "save_best='multitask/delta_m' but val_evaluator has no baselines"),
        ({"default_hooks.checkpoint.save_best": "detecton/pascal_voc/mAP"}, "no validation metric of task 'detecton'"),
    ],
)  # fmt: skip
def test_save_best_without_its_metric_is_refused_before_training(options, message):
    cfg = Config.fromfile(Path(__file__).parents[1] / "configs/quickstart.py")
    cfg.merge_from_dict(options)
    with pytest.raises(UserError, match=message):
        check_model_selection(cfg)


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
