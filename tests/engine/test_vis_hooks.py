"""The training-experience hooks in a real Runner: prediction grids at each validation (files, TensorBoard)
and work_dir/curves.png of per-task losses and metrics; the curves' history travels in checkpoints."""

from __future__ import annotations

import glob
import uuid
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

import multitask_vision
from multitask_vision.engine.vis_hooks import CurvesHook, MultiTaskVisualizationHook
from multitask_vision.utils.checkpoint import checkpoint_safe_globals

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/configs/tiny_quickstart.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """2 iterations of the tiny quickstart (one batch per source), then a validation, with both hooks and
    TensorBoard."""
    from mmengine.runner import Runner

    tmp = tmp_path_factory.mktemp("vis_hooks")
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    multitask_vision.register_all_modules()
    cfg = Config.fromfile(str(TINY))
    cfg.work_dir = str(tmp / "wd")
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 2, 2
    for source in cfg.val_dataloader.dataset.sources:
        source.indices = 2  # 2 validation samples per source: one batch
    cfg.custom_hooks = [
        dict(type="TaskCoverageHook"),
        dict(type="MultiTaskVisualizationHook", num_samples=1),
        dict(type="CurvesHook", interval=1),
    ]
    cfg.visualizer = dict(
        type="Visualizer",
        name=f"vis_{uuid.uuid4().hex[:8]}",
        vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")],
    )
    try:
        runner = Runner.from_cfg(cfg)
        with checkpoint_safe_globals():
            runner.train()
    finally:
        mp.undo()
    return runner, tmp / "wd"


def _hook(runner, cls):
    return next(h for h in runner.hooks if isinstance(h, cls))


def test_grids_written_per_validation_and_source(trained):
    runner, wd = trained
    pngs = sorted((wd / "vis" / "iter_2").rglob("*.png"))
    assert {p.parent.name for p in pngs} == {"synthetic_voc", "synthetic_nyu"}
    assert len(pngs) == 2  # num_samples=1 per source
    for p in pngs:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 3 * 256 and img.shape[1] > 3 * 256
    # the visualizer's LocalVisBackend got them too
    assert glob.glob(str(wd / "*" / "vis_data" / "vis_image" / "val_synthetic_voc_*_2.png"))


def test_tensorboard_has_images_and_per_task_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, wd = trained
    events = glob.glob(str(wd / "*" / "vis_data" / "events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(Path(events[0]).parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    images = acc.Tags()["images"]
    assert any(t.startswith("val_synthetic_nyu_") for t in images)
    scalars = acc.Tags()["scalars"]
    for key in ("detection.loss_cls", "depth.loss_depth_l1", "segmentation/mIoU", "depth/abs_rel"):
        assert any(key in s for s in scalars), (key, scalars)


def test_curves_png_and_history(trained):
    runner, wd = trained
    curves = wd / "curves.png"
    img = cv2.imread(str(curves))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600
    hist = _hook(runner, CurvesHook).history
    # losses of every task, at the iterations of their batches (batches alternate sources)
    assert {k.split(".")[0] for k in hist if k.startswith("train/") and "." in k} == {
        "train/detection",
        "train/segmentation",
        "train/depth",
    }
    assert [p[0] for p in hist["val/depth/abs_rel"]] == [2]
    assert [p[0] for p in hist["train/loss"]] == [1, 2]
    # the history travels in checkpoints, so a resumed run continues its curves
    with checkpoint_safe_globals():
        ck = torch.load(wd / "iter_2.pth", map_location="cpu")
    # (CheckpointHook saves iter_2 before the validation at iteration 2, and, the quickstart keeping its best
    # checkpoint by Δm (save_best), again after the validation that improved it)
    assert ck["meta"]["curves"]["val/depth/abs_rel"] == hist["val/depth/abs_rel"]
    assert ck["meta"]["curves"]["train/loss"] == hist["train/loss"]


def test_bad_hook_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        MultiTaskVisualizationHook(num_samples=0)
    with pytest.raises(ValueError, match="interval"):
        CurvesHook(interval=0)


def test_bad_visualization_config_fails_before_training(tiny_blocks):
    from types import SimpleNamespace

    from multitask_vision.models import MultiTaskModel
    from multitask_vision.visualization import DrawerError

    model = MultiTaskModel(tiny_blocks)
    hook = MultiTaskVisualizationHook()
    bad_drawer = SimpleNamespace(
        model=model, cfg=Config(dict(visualization=dict(drawers=dict(depth="Nope"))))
    )
    with pytest.raises(DrawerError, match="'Nope' is not a registered drawer"):
        hook.before_run(bad_drawer)
    bad_key = SimpleNamespace(model=model, cfg=Config(dict(visualization=dict(score_threshold=0.5))))
    with pytest.raises(ValueError, match=r"visualization: unknown keys \['score_threshold'\]"):
        hook.before_run(bad_key)
