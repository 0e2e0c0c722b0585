"""MultiTaskInferencer on the tiny model: the same predictions as model.predict through the dataset pipeline
(paths, folders, arrays, lists), class names from the config's sources, heads subsets running only their trunk,
the exported fp32 ONNX file agreeing with the checkpoint, and the refusals of bad inputs and mismatched files."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from multitask_vision.apis import MultiTaskInferencer
from multitask_vision.apis.backends import ModelMismatchError
from multitask_vision.apis.inputs import InputError
from multitask_vision.datasets.synthetic_scene import SYNTHETIC_CLASSES, SYNTHETIC_SEG_CLASSES
from tests.apis.conftest import CHECKPOINT, ONNX
from tests.compression.conftest import TINY

VAL_IMAGES = [f"data/voc/JPEGImages/val_00000{i}.jpg" for i in range(4)] + [
    f"data/nyu/images/val_00000{i}.png" for i in range(4)
]


@pytest.fixture(scope="module")
def reference(infer_workspace):
    """model.predict on the validation images through the config's test dataloader pipeline, by file name."""
    import os

    import multitask_vision
    from multitask_vision.models.builder import build_model
    from multitask_vision.registry import DATASETS

    multitask_vision.register_all_modules()
    old = os.getcwd()
    os.chdir(infer_workspace)
    try:
        cfg = Config.fromfile(str(TINY))
        model = build_model(cfg, CHECKPOINT)
        dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
        out = {}
        for start in range(0, len(dataset), 4):
            batch = pseudo_collate([dataset[i] for i in range(start, min(start + 4, len(dataset)))])
            for sample in model.test_step(batch):
                out[Path(sample.img_path).name] = sample
    finally:
        os.chdir(old)
    return out


def assert_matches(result: dict, sample) -> None:
    heads = result["heads"]
    det, ref = heads["det_head"], sample.pred_instances
    assert len(det["bboxes"]) == len(ref) > 0
    np.testing.assert_allclose(det["bboxes"], ref.bboxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(det["scores"], ref.scores.numpy(), atol=1e-6)
    np.testing.assert_array_equal(det["labels"], ref.labels.numpy())
    assert det["class_names"] == [SYNTHETIC_CLASSES[i] for i in det["labels"]]
    np.testing.assert_array_equal(heads["seg_head"]["label_map"], sample.pred_sem_seg.data[0].numpy())
    assert heads["seg_head"]["classes"] == list(SYNTHETIC_SEG_CLASSES)
    np.testing.assert_allclose(heads["depth_head"]["depth"], sample.pred_depth_map.data[0].numpy(), rtol=1e-6)
    assert result["size"] == tuple(sample.ori_shape)


def test_same_predictions_as_model_predict_on_paths_folders_arrays_and_lists(ws, reference, tmp_path):
    inferencer = MultiTaskInferencer(str(TINY), CHECKPOINT, device="cpu", batch_size=3)
    assert inferencer.heads == {"det_head": "detection", "seg_head": "segmentation", "depth_head": "depth"}
    # one path
    (single,) = inferencer(VAL_IMAGES[0])
    assert single["name"] == "val_000000" and single["path"] == VAL_IMAGES[0]
    assert_matches(single, reference["val_000000.jpg"])
    # a folder (sorted by name) and a glob
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in VAL_IMAGES:
        shutil.copy(p, folder / Path(p).name)
    results = inferencer(str(folder))
    assert [Path(r["path"]).name for r in results] == sorted(Path(p).name for p in VAL_IMAGES)
    # val_000000.jpg (VOC) and val_000000.png (NYU): output names stay unique
    assert [r["name"] for r in results[:2]] == ["val_000000", "val_000000_1"]
    for r in results:
        assert_matches(r, reference[Path(r["path"]).name])
    assert len(inferencer(str(folder / "*.png"))) == 4
    # numpy arrays, BGR (OpenCV's order) by default, RGB when told
    arrays = [cv2.imread(p) for p in VAL_IMAGES]
    for r, p in zip(inferencer(arrays), VAL_IMAGES):
        assert r["path"] is None and r["name"].startswith("array_")
        assert_matches(r, reference[Path(p).name])
    rgb = MultiTaskInferencer(str(TINY), CHECKPOINT, device="cpu", channel_order="rgb")
    assert_matches(rgb(arrays[5][..., ::-1])[0], reference[Path(VAL_IMAGES[5]).name])
    # a list mixing paths and arrays, batch size 1
    mixed = inferencer([VAL_IMAGES[2], arrays[6]], batch_size=1)
    assert_matches(mixed[0], reference[Path(VAL_IMAGES[2]).name])
    assert_matches(mixed[1], reference[Path(VAL_IMAGES[6]).name])
    stats = inferencer.last_stats
    assert stats.images == 2 and all(stats.seconds[s] > 0 for s in ("preprocess", "model", "decode"))


def test_heads_subset_runs_only_the_blocks_it_needs(ws):
    # the depth head reads the backbone directly: alone, it needs neither the neck nor the other heads
    options = {
        "model.blocks.4.inputs": ["backbone.layer2", "backbone.layer3"],
        "model.blocks.4.in_channels": [128, 256],
    }
    from multitask_vision.models.builder import build_model

    model = build_model(str(TINY), None, cfg_options=options)
    torch.save(model.state_dict(), "depth_on_backbone.pth")
    inferencer = MultiTaskInferencer(
        str(TINY), "depth_on_backbone.pth", heads=["depth_head"], device="cpu", cfg_options=options
    )
    called = []
    for name, block in inferencer.model.blocks.items():
        block.register_forward_hook(lambda *_, n=name: called.append(n))
    (result,) = inferencer(VAL_IMAGES[4])
    assert list(result["heads"]) == ["depth_head"] and result["heads"]["depth_head"]["depth"].shape == (
        64,
        64,
    )
    assert sorted(set(called)) == ["backbone", "depth_head"]
    with pytest.raises(ValueError, match=r"unknown head\(s\) 'sem_head': the config has det_head, seg_head"):
        MultiTaskInferencer(str(TINY), CHECKPOINT, heads=["sem_head"], device="cpu")


def test_onnx_fp32_agrees_with_the_checkpoint(ws):
    torch_inf = MultiTaskInferencer(str(TINY), CHECKPOINT, device="cpu", batch_size=4)
    onnx_inf = MultiTaskInferencer(str(TINY), onnx=ONNX, batch_size=4)
    assert onnx_inf.backend.fixed_input_hw == (64, 64)
    ref = [p for batch in torch_inf.predict_batches(VAL_IMAGES) for p in batch]
    got = [p for batch in onnx_inf.predict_batches(VAL_IMAGES) for p in batch]
    boxes = 0
    for r, g in zip(ref, got):
        rd, gd = r.heads["det_head"], g.heads["det_head"]
        assert len(gd["bboxes"]) == len(rd["bboxes"]) and gd["class_names"] == rd["class_names"]
        np.testing.assert_allclose(gd["bboxes"], rd["bboxes"], atol=1e-2)  # pixels
        np.testing.assert_allclose(gd["scores"], rd["scores"], atol=1e-4)
        boxes += len(rd["bboxes"])
        # label maps: identical, except where the checkpoint's two best classes tie
        logits = r.samples["seg_head"].seg_logits.data
        top2 = logits.topk(2, dim=0).values
        tie = (top2[0] - top2[1] < 1e-4).numpy()
        differ = r.heads["seg_head"]["label_map"] != g.heads["seg_head"]["label_map"]
        assert not (differ & ~tie).any()
        rdep, gdep = r.heads["depth_head"]["depth"], g.heads["depth_head"]["depth"]
        assert np.abs(gdep - rdep).max() <= 1e-4 * np.abs(rdep).max()
    assert boxes > 0


def test_onnx_runs_a_subset_of_the_files_heads(ws):
    """Only the part of the graph the chosen heads need runs (ONNX Runtime would run all of a graph)."""
    import onnx

    from multitask_vision.compression.export import sub_model

    inferencer = MultiTaskInferencer(str(TINY), onnx=ONNX, heads=["seg_head"])
    assert [o.name for o in inferencer.backend.session.get_outputs()] == ["seg_head.logits"]
    full, part = onnx.load(ONNX), onnx.load_from_string(sub_model(ONNX, ["seg_head.logits"]))
    assert len(part.graph.node) < len(full.graph.node)
    weights = {i.name.split(".")[2] for i in part.graph.initializer if i.name.startswith("model.blocks.")}
    assert weights == {"backbone", "neck", "seg_head"}  # no weight of the detection or depth head
    (result,) = inferencer(VAL_IMAGES[0])
    assert list(result["heads"]) == ["seg_head"]
    (everything,) = MultiTaskInferencer(str(TINY), onnx=ONNX)(VAL_IMAGES[0])
    np.testing.assert_array_equal(
        result["heads"]["seg_head"]["label_map"], everything["heads"]["seg_head"]["label_map"]
    )
    with pytest.raises(ValueError, match=rf"unknown head\(s\) 'normals_head': {ONNX} has det_head"):
        MultiTaskInferencer(str(TINY), onnx=ONNX, heads=["normals_head"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"model.blocks.3.name": "segm_head"}, r"it outputs 'seg_head', which the config has no head named"),
        (
            {"model.blocks.3.num_classes": 6},
            r"output seg_head\.logits is \(5, 8, 8\) per image in the file but \(6, 8, 8\) for the config",
        ),
        (
            {"model.data_preprocessor.mean": [0.0, 0.0, 0.0]},
            r"its manifest model_fp32\.json has preprocess\.mean=\[123\.67.*\], the config's data_preprocessor \[0\.0",
        ),
        (
            {
                "test_dataloader.dataset.sources.0.pipeline.1": dict(
                    type="MultiTaskResize", scale=(96, 96), keep_ratio=False
                ),
                "test_dataloader.dataset.sources.1.pipeline.1": dict(
                    type="MultiTaskResize", scale=(96, 96), keep_ratio=False
                ),
            },
            r"it takes 64x64 images but the config's test pipeline resizes them to 96x96",
        ),
    ],
    ids=["other heads", "other classes", "other normalisation", "other input size"],
)
def test_onnx_file_that_does_not_match_the_config_is_refused(ws, options, message):
    with pytest.raises(ModelMismatchError, match=rf"^{ONNX} does not match .*tiny_train\.py: {message}") as e:
        MultiTaskInferencer(str(TINY), onnx=ONNX, cfg_options=options)
    assert "\n" not in str(e.value)


def test_bad_inputs(ws, tmp_path):
    inferencer = MultiTaskInferencer(str(TINY), CHECKPOINT, device="cpu", batch_size=2)
    with pytest.raises(InputError, match=r"^input not found: nowhere/a\.jpg$"):
        inferencer(["nowhere/a.jpg"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=rf"^cannot read image {broken}: "):
        inferencer(str(broken))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=rf"^no image in folder {empty}: it is empty"):
        inferencer(str(empty))
    with pytest.raises(InputError, match=r"no image matches '.*\*\.tif'"):
        inferencer(str(tmp_path / "*.tif"))
    # in a folder: a non-image file is skipped with a warning, an unreadable image skipped and counted
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in VAL_IMAGES[:3]:
        shutil.copy(p, folder / Path(p).name)
    (folder / "notes.txt").write_text("hello")
    shutil.copy(broken, folder / "val_000000b.jpg")
    results = inferencer(str(folder))
    assert [r["name"] for r in results] == ["val_000000", "val_000001", "val_000002"]
    skipped = dict(inferencer.last_stats.skipped.items)
    assert skipped.keys() == {str(folder / "notes.txt"), str(folder / "val_000000b.jpg")}
    assert "not an image file" in skipped[str(folder / "notes.txt")]
    assert "cannot read it as an image" in skipped[str(folder / "val_000000b.jpg")]
    assert "(2 skipped)" in inferencer.last_stats.summary()
    with pytest.raises(InputError, match=r"no image in folder .*: 1 file\(s\), none an image"):
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "a.txt").write_text("x")
        inferencer(str(tmp_path / "docs"))
    with pytest.raises(
        InputError, match=r"input 0: expected an \(H, W, 3\) image array, got shape \(3, 8, 8\)"
    ):
        inferencer(np.zeros((3, 8, 8), np.uint8))


def test_checkpoint_or_onnx_exactly_one(ws):
    with pytest.raises(ValueError, match="give a checkpoint"):
        MultiTaskInferencer(str(TINY))
    with pytest.raises(ValueError, match="give a checkpoint"):
        MultiTaskInferencer(str(TINY), CHECKPOINT, onnx=ONNX)
    with pytest.raises(FileNotFoundError, match="model file not found: missing.onnx"):
        MultiTaskInferencer(str(TINY), onnx="missing.onnx")


def test_openmmlab_heads_through_their_adapters(ws):
    """mmdet's FCOSHead and mmseg's FCNHead: the inferencer decodes them as model.predict does."""
    import multitask_vision
    from multitask_vision.models.builder import build_model
    from multitask_vision.registry import DATASETS
    from tests.compression.conftest import TINY_MMLAB, build

    multitask_vision.register_all_modules()
    torch.save(build(TINY_MMLAB).state_dict(), "mmlab.pth")
    cfg = Config.fromfile(str(TINY_MMLAB))
    model = build_model(cfg, "mmlab.pth")
    dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
    (sample,) = model.test_step(pseudo_collate([dataset[0]]))
    (result,) = MultiTaskInferencer(cfg, "mmlab.pth", device="cpu")(sample.img_path)
    det = result["heads"]["det_head"]
    assert len(det["bboxes"]) == len(sample.pred_instances) > 0
    np.testing.assert_allclose(det["bboxes"], sample.pred_instances.bboxes.numpy(), atol=1e-4)
    assert det["class_names"] == [SYNTHETIC_CLASSES[i] for i in sample.pred_instances.labels]
    np.testing.assert_array_equal(
        result["heads"]["seg_head"]["label_map"], sample.pred_sem_seg.data[0].numpy()
    )


def test_timm_backbone_checkpoint_and_onnx(ws):
    """A timm trunk (tiny ConvNeXt): the inferencer predicts as model.predict does from the checkpoint, and the
    model exported as deploy.py exports it gives the same label maps and depth through ONNX Runtime."""
    import multitask_vision
    from multitask_vision.models.builder import build_model
    from multitask_vision.registry import DATASETS
    from tests.apis.conftest import export_like_deploy
    from tests.compression.conftest import TINY_TIMM, build

    multitask_vision.register_all_modules()
    torch.save(build(TINY_TIMM).state_dict(), "timm.pth")
    cfg = Config.fromfile(str(TINY_TIMM))
    model = build_model(cfg, "timm.pth")
    dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
    (sample,) = model.test_step(pseudo_collate([dataset[0]]))
    (result,) = MultiTaskInferencer(cfg, "timm.pth", device="cpu")(sample.img_path)
    np.testing.assert_array_equal(
        result["heads"]["seg_head"]["label_map"], sample.pred_sem_seg.data[0].numpy()
    )
    np.testing.assert_allclose(
        result["heads"]["depth_head"]["depth"], sample.pred_depth_map.data[0].numpy(), rtol=1e-6
    )
    export_like_deploy(model, Path("timm_fp32.onnx"))
    (exported,) = MultiTaskInferencer(cfg, onnx="timm_fp32.onnx")(sample.img_path)
    ref, got = result["heads"]["depth_head"]["depth"], exported["heads"]["depth_head"]["depth"]
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (
        exported["heads"]["seg_head"]["label_map"] == result["heads"]["seg_head"]["label_map"]
    ).mean() > 0.999
