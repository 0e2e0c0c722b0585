"""MultiSourceDataset on real (tiny, generated) sources; task coverage between data and heads."""

from __future__ import annotations

import pytest
from mmengine.registry import init_default_scope

import multitask_vision
from multitask_vision.datasets import MultiSourceDataset
from multitask_vision.engine.hooks import TaskCoverageHook
from multitask_vision.utils.errors import UserError

multitask_vision.register_all_modules()
init_default_scope("multitask_vision")

PIPE = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="PackMultiTaskInputs"),
]


def sources(root):
    common = dict(num_train=6, num_val=2, image_size=(32, 32), split="train", pipeline=PIPE)
    return [
        dict(type="SyntheticVOCDataset", data_root=str(root / "voc"), seed=0, source_name="voc", **common),
        dict(type="SyntheticNYUDataset", data_root=str(root / "nyu"), seed=1, source_name="nyu", **common),
    ]


def test_sources_tasks_and_meta(tmp_path):
    ds = MultiSourceDataset(sources(tmp_path))
    assert ds.source_names == ["voc", "nyu"] and len(ds) == 12
    assert set(ds.tasks) == {"detection", "segmentation", "depth"}
    meta = ds.metainfo["task_meta"]
    assert meta["detection"]["classes"] == ("box", "ball", "cone", "ring")
    assert meta["segmentation"]["classes"][0] == "background" and meta["depth"] == {}
    item = ds[7]  # a NYU sample: depth + segmentation, no boxes
    sample = item["data_samples"]
    assert ds.source_of(7) == 1 and sample.metainfo["source"] == "nyu"
    assert "gt_depth_map" in sample and "gt_instances" not in sample


def test_only_tasks_narrows_sources(tmp_path):
    ds = MultiSourceDataset(sources(tmp_path), only_tasks=["depth"])
    assert ds.source_names == ["nyu"] and ds.tasks == ["depth"]
    sample = ds[0]["data_samples"]
    assert sample.metainfo["tasks"] == ("depth",) and "gt_sem_seg" not in sample
    with pytest.raises(ValueError, match=r"only_tasks=\['nothing'\]: no source labels any of these tasks"):
        MultiSourceDataset(sources(tmp_path), only_tasks=["nothing"])


def test_conflicting_class_lists_for_one_task(tmp_path):
    srcs = sources(tmp_path)
    srcs[1]["metainfo"] = dict(classes=("floor", "wall", "thing"))
    with pytest.raises(ValueError, match="both label task 'segmentation' but with different classes"):
        MultiSourceDataset(srcs)


class _Runner:
    def __init__(self, model, dataset):
        self.model = model
        self.train_dataloader = type("DL", (), {"dataset": dataset})()
        self.logger = None


def test_task_coverage_hook(tmp_path, tiny_blocks):
    from multitask_vision.models import MultiTaskModel

    ds = MultiSourceDataset(sources(tmp_path))
    no_depth = MultiTaskModel(blocks=[b for b in tiny_blocks if b["name"] != "depth_head"])
    with pytest.raises(
        UserError, match=r"the training data labels tasks no head predicts: \['depth'\]"
    ):  # one line from train.py
        TaskCoverageHook().before_train(_Runner(no_depth, ds))
    only_det = MultiSourceDataset(sources(tmp_path), only_tasks=["detection"])
    with pytest.warns(
        UserWarning, match="head 'seg_head' predicts task 'segmentation' but no dataset labels it"
    ):
        TaskCoverageHook().before_train(_Runner(MultiTaskModel(blocks=tiny_blocks), only_det))
