"""The inferencer's parts on their own: the test pipeline without annotation loading, the converters of data-sample
fields to numpy (registered and generic), the video mosaic's size, class names read without touching the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData

from multitask_vision.apis.pipeline import config_test_pipeline, inference_pipeline, lazy_sources
from multitask_vision.apis.results import CONVERTERS, head_result, register_converter
from multitask_vision.structures import MultiTaskDataSample
from multitask_vision.visualization import PredictionPainter, task_styles
from tests.compression.conftest import ROOT, TINY


def test_pipeline_drops_annotation_loaders_by_what_they_are():
    import multitask_vision

    multitask_vision.register_all_modules()
    specs = Config.fromfile(str(ROOT / "configs/det_seg_depth_mmlab_voc_nyu.py")).test_pipeline
    assert [t["type"] for t in specs] == [
        "LoadMultiTaskImage",  # mmcv's LoadImageFromFile with files checked: replaced by the same loader
        "MultiTaskResize",
        "LoadMultiTaskAnnotations",
        "PackMultiTaskInputs",
    ]
    extra = [dict(type="mmseg.LoadDepthAnnotation"), dict(type="mmdet.LoadAnnotations", with_bbox=True)]
    loader, transforms = inference_pipeline([*specs[:3], *extra, specs[3]])
    assert type(loader).__name__ == "InferencerLoader"
    assert [type(t).__name__ for t in transforms] == ["MultiTaskResize", "PackMultiTaskInputs"]
    # the loader reads a path or takes an array, and the rest resizes and packs it without ground truth
    results = loader(np.zeros((100, 200, 3), np.uint8))
    for t in transforms:
        results = t(results)
    sample = results["data_samples"]
    assert tuple(results["inputs"].shape) == (3, 256, 512) and sample.ori_shape == (100, 200)
    assert not [k for k in sample.keys() if k.startswith("gt_")]
    with pytest.raises(ValueError, match="the test pipeline has no image loader"):
        inference_pipeline(specs[1:])
    # an exported file of a fixed size, a pipeline without a resize: images are fitted into it
    _, fitted = inference_pipeline(
        [dict(type="LoadImageFromFile"), dict(type="PackMultiTaskInputs")], fit_hw=(64, 96)
    )
    assert (
        type(fitted[0]).__name__ == "MultiTaskResize" and fitted[0].scale == (96, 64) and fitted[0].keep_ratio
    )


def test_the_test_pipeline_is_the_one_the_sources_share():
    cfg = Config.fromfile(str(TINY))
    assert [t["type"] for t in config_test_pipeline(cfg)] == [
        "LoadMultiTaskImage",
        "LoadMultiTaskAnnotations",
        "PackMultiTaskInputs",
    ]
    # sources with different pipelines: the config's top-level test_pipeline settles it, else an error
    cfg.test_dataloader.dataset.sources[1].pipeline = [dict(type="LoadImageFromFile")]
    cfg.test_pipeline = [dict(type="LoadImageFromFile"), dict(type="PackMultiTaskInputs")]
    assert config_test_pipeline(cfg) == cfg.test_pipeline
    cfg.test_pipeline = None
    with pytest.raises(ValueError, match="sources synthetic_voc, synthetic_nyu have different pipelines"):
        config_test_pipeline(cfg)


def test_class_names_come_from_the_sources_without_generating_their_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tiny config's data_root is relative: nothing exists here
    sources = lazy_sources(Config.fromfile(str(TINY)))
    assert [s.source_name for s in sources] == ["synthetic_voc", "synthetic_nyu"]
    styles = task_styles(sources)
    assert styles["detection"]["classes"] == ("box", "ball", "cone", "ring")
    assert (
        styles["segmentation"]["classes"][0] == "background" and len(styles["segmentation"]["palette"]) == 5
    )
    assert not (tmp_path / "data").exists()
    assert len(sources[0]) == 8 and (tmp_path / "data/voc/JPEGImages").is_dir()  # generated at the first read


def test_converters_registered_and_generic():
    sample = MultiTaskDataSample(metainfo=dict(ori_shape=(4, 6)))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 5.0, 3.0]]),
        scores=torch.tensor([0.9, 0.2]),
        labels=torch.tensor([1, 0]),
    )
    out = head_result(sample, "detection", ("cat", "dog"), score_thr=0.5)
    assert out["task"] == "detection" and out["class_names"] == ["dog"] and out["bboxes"].shape == (1, 4)
    assert out["bboxes"].dtype == np.float32 and out["labels"].dtype == np.int64
    # a head without a converter keeps its pred_* fields, as numpy; seg_logits-like extras are left out
    normals = MultiTaskDataSample(metainfo=dict(ori_shape=(4, 6)))
    normals.pred_normals = PixelData(data=torch.ones(3, 4, 6))
    normals.normals_logits = PixelData(data=torch.ones(3, 4, 6))
    out = head_result(normals, "normals")
    assert set(out) == {"task", "pred_normals"} and out["pred_normals"]["data"].shape == (3, 4, 6)
    # ... and one registered for its field is used
    register_converter("pred_normals")(lambda element, classes, thr: dict(normals=element.data.numpy()))
    try:
        out = head_result(normals, "normals")
        assert set(out) == {"task", "normals"} and isinstance(out["normals"], np.ndarray)
    finally:
        CONVERTERS.pop("pred_normals")


def test_video_mosaic_keeps_the_frame_size():
    sample = MultiTaskDataSample(metainfo=dict(ori_shape=(45, 61)))
    det = sample.clone()
    det.pred_instances = InstanceData(
        bboxes=torch.tensor([[2.0, 3.0, 30.0, 40.0]]), scores=torch.tensor([0.9]), labels=torch.tensor([0])
    )
    seg = sample.clone()
    seg.pred_sem_seg = PixelData(data=torch.zeros(1, 45, 61, dtype=torch.long))
    depth = sample.clone()
    depth.pred_depth_map = PixelData(data=torch.rand(1, 45, 61))
    painter = PredictionPainter({"d": "detection", "s": "segmentation", "z": "depth"})
    image = np.full((45, 61, 3), 200, np.uint8)
    frame = painter.mosaic(image, {"d": det, "s": seg, "z": depth})
    assert frame.shape == (45, 61, 3) and frame.dtype == np.uint8
    strip = painter.strip(image, {"d": det, "s": seg, "z": depth}, title="x")
    assert strip.shape[1] > 4 * 256  # input + three prediction panels at panel_size, plus keys
