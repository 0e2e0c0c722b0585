"""Browsing a dataset without a model (``visualize.py --no-model``): the ground truth of every task of every
source, drawn on the image the pipeline delivers (after its transforms), as mmdet's browse_dataset does."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
import torch

import multitask_vision
from multitask_vision.engine.launch import load_config
from multitask_vision.registry import DATASETS
from multitask_vision.visualization import (
    DetectionDrawer,
    DrawerError,
    GroundTruthRenderer,
    source_tasks,
    task_styles,
)
from multitask_vision.visualization.grid import GAP, HEADER_H, TITLE_H
from multitask_vision.visualization.runtime import source_batches

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/configs/tiny_quickstart.py"
# deterministic transforms, so that the test knows what the pipeline delivered: 64x64 -> 96x96, flipped
PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="MultiTaskResize", scale=(96, 96), keep_ratio=False),
    dict(type="MultiTaskRandomFlip", prob=1.0),
    dict(type="PackMultiTaskInputs"),
]


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """The tiny quickstart's training sources (generated in a temporary folder) with :data:`PIPELINE`."""
    monkeypatch.chdir(tmp_path)
    multitask_vision.register_all_modules()
    cfg = copy.deepcopy(load_config(str(TINY)).train_dataloader.dataset)
    for source in cfg.sources:
        source.pipeline = copy.deepcopy(PIPELINE)
    return DATASETS.build(cfg)


def test_ground_truth_is_drawn_on_what_the_pipeline_delivers(dataset, monkeypatch):
    drawn = []
    original = DetectionDrawer.draw_ground_truth

    def spy(self, image, gt, scale):
        drawn.append((gt.bboxes.clone(), scale))
        return original(self, image, gt, scale)

    monkeypatch.setattr(DetectionDrawer, "draw_ground_truth", spy)
    renderer = GroundTruthRenderer(source_tasks(dataset), task_styles(dataset), panel_size=96)
    (voc, batch), (nyu, nyu_batch) = source_batches(dataset, 1)
    assert (voc, nyu) == ("synthetic_voc", "synthetic_nyu")
    grid = renderer.render(batch)[0]
    info = dataset.datasets[0].get_data_info(0)
    # the input panel is the resized and flipped image, not the file as stored
    stored = mmcv.imread(info["img_path"], channel_order="rgb")
    expected = mmcv.imflip(cv2.resize(stored, (96, 96), interpolation=cv2.INTER_LINEAR))
    assert [r.task for r in grid.rows] == ["detection", "segmentation"]
    shown = grid.rows[0].panels["input"].astype(int)
    assert np.abs(shown - expected.astype(int)).max() <= 1
    assert np.abs(shown - cv2.resize(stored, (96, 96)).astype(int)).max() > 50  # (the unflipped one differs)
    # the boxes drawn are the ground truth moved by the same transforms: scaled by 1.5, mirrored
    boxes = torch.tensor([inst["bbox"] for inst in info["instances"] if not inst["ignore_flag"]])
    x0, y0, x1, y1 = (boxes * 1.5).unbind(1)
    (gt, scale), *_ = drawn
    assert scale == (1.0, 1.0)
    assert torch.allclose(gt, torch.stack([96 - x1, y0, 96 - x0, y1], 1), atol=1e-3)
    assert "ground truth" in grid.rows[0].panels
    assert ("ground truth" in grid.rows[1].panels) == ("segmentation" in info["tasks"])
    # each source shows its own tasks: depth and segmentation for the NYU layout
    nyu_grid = renderer.render(nyu_batch)[0]
    assert [r.task for r in nyu_grid.rows] == ["depth", "segmentation"]
    assert all("ground truth" in r.panels for r in nyu_grid.rows)


def test_a_task_without_a_ground_truth_drawer_is_one_error_naming_it():
    renderer = GroundTruthRenderer({"src": {"normals": "normals"}})
    with pytest.raises(
        DrawerError, match=r"task 'normals' \(annotation kind 'normals'\).*drawers=dict\(normals="
    ):
        renderer.drawer("normals", "normals")


def run_visualize(args: list[str], capsys) -> tuple[int, str]:
    import visualize

    try:
        visualize.main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_visualize_no_model_writes_a_grid_per_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_visualize([str(TINY), "--no-model", "--num", "2", "--out", "browse"], capsys)
    assert code == 0, err
    pngs = sorted(str(p.relative_to(tmp_path / "browse")) for p in (tmp_path / "browse").rglob("*.png"))
    # the training split by default (the training pipeline, random flips included)
    assert pngs == [f"{s}/train_00000{i}.png" for s in ("synthetic_nyu", "synthetic_voc") for i in (0, 1)]
    # two rows per sample (each source labels two tasks) of 256-pixel panels: input | ground truth | key
    for p in (tmp_path / "browse").rglob("*.png"):
        img = cv2.imread(str(p))
        assert img.shape[0] == TITLE_H + 2 * (HEADER_H + 256) + 2 * GAP, p
        assert img.shape[1] > 2 * 256


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--no-model", "--checkpoint", "x.pth"],
            "error: --no-model draws the data without a model: drop --checkpoint",
        ),
        ([], "error: --checkpoint is required (or --no-model, to browse the data without a model)"),
    ],
)
def test_no_model_and_checkpoint_are_exclusive_and_one_is_needed(
    tmp_path, monkeypatch, capsys, extra, message
):
    monkeypatch.chdir(tmp_path)
    code, err = run_visualize([str(TINY), *extra], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == message
