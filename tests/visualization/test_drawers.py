"""Drawers on toy cases (a box drawn where the box is, one depth scale for prediction and ground truth, ...),
grids of a tiny model (unlabelled tasks shown as prediction only), and the errors for undrawable tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData, PixelData

from multitask_vision.registry import DRAWERS
from multitask_vision.visualization import (
    DepthDrawer,
    DetectionDrawer,
    DrawerError,
    GridRenderer,
    SegmentationDrawer,
    TaskDrawer,
)
from multitask_vision.visualization.drawers import INVALID_COLOR
from multitask_vision.visualization.grid import check_overrides, drawer_for_fields
from tests.conftest import make_sample

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
GREY = 120


def grey(size=128):
    return np.full((size, size, 3), GREY, np.uint8)


def near(panel, x, y, r=2):
    """Pixels of a small window around (x, y), as a (N, 3) int array."""
    return panel[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3).astype(int)


def test_detection_box_drawn_where_the_box_is_and_low_scores_hidden():
    drawer = DetectionDrawer("detection", classes=("a", "b"), palette=[GREEN, RED], score_thr=0.5)
    pred = InstanceData(
        bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0], [44.0, 44.0, 60.0, 60.0]]),
        labels=torch.tensor([1, 0]),
        scores=torch.tensor([0.9, 0.2]),
    )
    out = drawer.draw(grey(128), pred, None, scale=(2.0, 2.0))  # 64x64 original shown at 128x128
    assert list(out.panels) == ["prediction"]  # no ground truth given: prediction only
    panel = out.panels["prediction"]
    assert panel.shape == (128, 128, 3)
    # the kept box (16..80 x 16..72 at panel scale) has red edges; its inside is untouched
    left_edge = near(panel, 16, 60)
    assert ((left_edge[:, 0] > 200) & (left_edge[:, 1] < 80)).any()
    assert (near(panel, 48, 50) == GREY).all()
    # the box scored 0.2 < 0.5 is not drawn
    assert (near(panel, 88, 108) == GREY).all() and (near(panel, 120, 108) == GREY).all()
    # the legend column is as tall as the panels
    assert out.key is not None and out.key.shape[0] == 128


def test_detection_ground_truth_panel():
    drawer = DetectionDrawer("detection", classes=("a", "b"), palette=[GREEN, RED])
    gt = InstanceData(bboxes=torch.tensor([[10.0, 10.0, 50.0, 50.0]]), labels=torch.tensor([0]))
    pred = InstanceData(
        bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long), scores=torch.zeros(0)
    )
    out = drawer.draw(grey(64), pred, gt, scale=(1.0, 1.0))
    assert set(out.panels) == {"prediction", "ground truth"}
    assert (out.panels["prediction"] == GREY).all()  # nothing predicted: the image unchanged
    edge = near(out.panels["ground truth"], 10, 40, 1)
    assert ((edge[:, 1] > 200) & (edge[:, 0] < 80)).any()  # green edge of class 'a'


def test_segmentation_overlay_uses_the_palette_and_lists_present_classes():
    drawer = SegmentationDrawer("seg", classes=("bg", "left", "right"), palette=[(0, 0, 0), RED, BLUE])
    labels = torch.ones(1, 32, 32, dtype=torch.long)
    labels[..., 16:] = 2
    gt = labels.clone()
    gt[..., :4, :] = 255  # an ignored band
    out = drawer.draw(grey(64), PixelData(data=labels), PixelData(data=gt), scale=(2.0, 2.0))
    pred = out.panels["prediction"].astype(int)
    a = drawer.alpha
    expect_left = np.array(RED) * a + GREY * (1 - a)
    expect_right = np.array(BLUE) * a + GREY * (1 - a)
    assert np.abs(pred[10:50, 5:25].mean((0, 1)) - expect_left).max() < 3
    assert np.abs(pred[10:50, 40:60].mean((0, 1)) - expect_right).max() < 3
    # the ignored band of the ground truth is light, not a class colour
    assert out.panels["ground truth"][:6, :, :].mean() > 200
    assert out.key is not None and out.key.shape[0] == 64


def test_depth_prediction_and_ground_truth_share_one_scale():
    gt = torch.ones(1, 32, 32)
    gt[..., 16:] = 3.0
    gt[..., 28:, 28:] = 0  # no ground truth there
    pred = torch.full((1, 32, 32), 3.0)
    out = DepthDrawer("depth").draw(grey(64), PixelData(data=pred), PixelData(data=gt), scale=(2.0, 2.0))
    assert set(out.panels) == {"prediction", "ground truth", "|pred - gt|"}
    p, g, e = (out.panels[k] for k in ("prediction", "ground truth", "|pred - gt|"))
    assert all(x.shape == (64, 64, 3) for x in (p, g, e))
    # 3 m is the same colour in both panels; 1 m is another colour
    assert (p[40, 10] == g[40, 50]).all() and not (g[40, 10] == g[40, 50]).all()
    assert (g[60, 60] == INVALID_COLOR).all() and (e[60, 60] == INVALID_COLOR).all()
    # no error on the right half: the error colormap's zero; a 2 m error on the left is bright
    assert e[40, 50].sum() < 60 and e[40, 10].sum() > 300
    assert out.key is not None and out.key.shape[0] == 64


def test_depth_without_ground_truth_is_prediction_only():
    out = DepthDrawer("depth").draw(grey(64), PixelData(data=torch.rand(1, 64, 64) + 1), None, scale=(1, 1))
    assert list(out.panels) == ["prediction"]


def test_ground_truth_alone_for_browsing_a_dataset():
    det = DetectionDrawer("detection", classes=("a", "b"), palette=[GREEN, RED])
    gt = InstanceData(bboxes=torch.tensor([[10.0, 10.0, 50.0, 50.0]]), labels=torch.tensor([1]))
    out = det.draw_ground_truth(grey(64), gt, scale=(1.0, 1.0))
    assert list(out.panels) == ["ground truth"]
    edge = near(out.panels["ground truth"], 10, 40, 1)
    assert ((edge[:, 0] > 200) & (edge[:, 1] < 80)).any()  # red edge of class 'b'
    assert out.key is not None and out.key.shape[0] == 64
    # depth: one scale over the valid pixels, pixels without depth grey
    depth = torch.full((1, 64, 64), 2.0)
    depth[..., :32] = 0
    depth[..., 48:] = 6.0
    panel = (
        DepthDrawer("depth").draw_ground_truth(grey(64), PixelData(data=depth), (1, 1)).panels["ground truth"]
    )
    assert (panel[10, 10] == INVALID_COLOR).all() and not (panel[10, 40] == INVALID_COLOR).all()
    assert not (panel[10, 40] == panel[10, 60]).all()  # 2 m and 6 m: two colours of the scale
    # segmentation (the base class's way: drawn as a prediction would be, under the ground-truth title)
    labels = torch.ones(1, 32, 32, dtype=torch.long)
    seg = SegmentationDrawer("seg", classes=("bg", "x"), palette=[(0, 0, 0), RED])
    out = seg.draw_ground_truth(grey(64), PixelData(data=labels), (2.0, 2.0))
    assert list(out.panels) == ["ground truth"]
    assert out.panels["ground truth"][30, 30, 0] > out.panels["ground truth"][30, 30, 1] + 100  # red overlay


def test_grid_of_a_tiny_model_shows_unlabelled_tasks_as_prediction_only(tiny_blocks):
    from multitask_vision.models import MultiTaskModel

    model = MultiTaskModel(tiny_blocks).eval()
    samples = [make_sample(("detection",), seed=0), make_sample(("depth", "segmentation"), seed=1)]
    for s, src in zip(samples, ("voc", "nyu")):
        s.set_metainfo(dict(source=src, img_path=f"{src}_img.png"))  # no such file: drawn from the input
    inputs = [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in samples]
    styles = {"detection": dict(classes=("a", "b", "c")), "segmentation": dict(classes=("w", "x", "y", "z"))}
    grids = GridRenderer(model, styles, panel_size=128).render(dict(inputs=inputs, data_samples=samples))
    assert [g.source for g in grids] == ["voc", "nyu"]
    for grid, labelled in zip(grids, (("detection",), ("depth", "segmentation"))):
        assert [r.task for r in grid.rows] == ["detection", "segmentation", "depth"]
        for row in grid.rows:
            assert row.panels["input"].shape == (128, 128, 3)
            assert ("ground truth" in row.panels) == (row.task in labelled)
        assert grid.image is not None and grid.image.shape[0] > 3 * 128 and grid.image.shape[1] >= 3 * 128
    depth_row = grids[1].rows[2]
    assert "|pred - gt|" in depth_row.panels


def test_task_without_drawer_names_task_field_and_how_to_register():
    with pytest.raises(DrawerError) as e:
        drawer_for_fields("normals", "normal_head", {"pred_normals"})
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("'normals'", "'normal_head'", "pred_normals", "@DRAWERS.register_module()", "fields=("):
        assert part in msg
    assert "visualization=dict(drawers=dict(normals='MyDrawer'))" in msg


def test_a_registered_drawer_draws_its_new_field():
    @DRAWERS.register_module()
    class NormalsDrawer(TaskDrawer):
        fields = ("pred_normals", "gt_normals")

    try:
        assert drawer_for_fields("normals", "h", {"pred_normals"}) == [NormalsDrawer]
        assert check_overrides({"seg_nyu": "NormalsDrawer"}, ["seg_nyu"]) == {"seg_nyu": NormalsDrawer}
    finally:
        DRAWERS._module_dict.pop("NormalsDrawer")


def test_drawers_are_chosen_by_field_not_task_name():
    assert drawer_for_fields("seg_voc", "h", {"seg_logits", "pred_sem_seg"}) == [SegmentationDrawer]
    assert drawer_for_fields("whatever", "h", {"pred_depth_map"}) == [DepthDrawer]


def test_bad_drawer_overrides():
    with pytest.raises(DrawerError, match="'NoSuchDrawer' is not a registered drawer"):
        check_overrides({"depth": "NoSuchDrawer"}, ["depth"])
    with pytest.raises(DrawerError, match="names task 'dpeth', which no head predicts"):
        check_overrides({"dpeth": "DepthDrawer"}, ["depth"])
