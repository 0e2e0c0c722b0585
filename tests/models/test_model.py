"""MultiTaskModel: heads run only for labelled tasks, edges are checked at build time."""

from __future__ import annotations

import pytest
import torch

from multitask_vision.models import GraphError, MultiTaskModel


def build(blocks, **kw):
    torch.manual_seed(0)
    return MultiTaskModel(blocks=blocks, **kw)


def test_unlabelled_heads_do_not_run_and_get_no_gradient(tiny_blocks, batch):
    model = build(tiny_blocks)
    inputs, samples = batch([("segmentation",), ("segmentation",)])
    losses = model(inputs, samples, mode="loss")
    assert losses and all(k.startswith("segmentation.") for k in losses), losses.keys()
    sum(v for k, v in losses.items() if "loss" in k).backward()
    for name, p in model.named_parameters():
        if name.startswith(("blocks.det_head.", "blocks.depth_head.")):
            assert p.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks["backbone"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks["seg_head"].parameters())


def test_mixed_batch_routes_samples_to_their_heads(tiny_blocks, batch, monkeypatch):
    model = build(tiny_blocks)
    inputs, samples = batch([("detection", "segmentation"), ("depth", "segmentation"), ("depth",)])
    seen = {}
    for name, adapter in model.adapters.items():
        if name.endswith("_head"):
            orig = adapter.loss

            def spy(module, x, data_samples, _orig=orig, _name=name):
                first = x[0] if isinstance(x, tuple) else x
                seen[_name] = (first.shape[0], [s.metainfo["tasks"] for s in data_samples])
                return _orig(module, x, data_samples)

            monkeypatch.setattr(adapter, "loss", spy)
    losses = model(inputs, samples, mode="loss")
    # features are sliced to the labelled samples, and no head ever sees a sample not labelled for it
    assert seen["det_head"][0] == 1 and all("detection" in t for t in seen["det_head"][1])
    assert seen["seg_head"][0] == 2 and all("segmentation" in t for t in seen["seg_head"][1])
    assert seen["depth_head"][0] == 2 and all("depth" in t for t in seen["depth_head"][1])
    assert {k.split(".")[0] for k in losses} == {"detection", "segmentation", "depth"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_task_weights_scale_only_their_task(tiny_blocks, batch):
    inputs, samples = batch([("detection", "segmentation")])
    plain = build(tiny_blocks)(inputs, samples, mode="loss")
    weighted = build(
        tiny_blocks, task_weighting=dict(type="FixedTaskWeighting", weights=dict(detection=0.5))
    )(inputs, samples, mode="loss")
    for k, v in plain.items():
        if k.endswith(".weight"):
            continue
        factor = 0.5 if k.startswith("detection.") and "loss" in k else 1.0
        torch.testing.assert_close(weighted[k], v * factor)
    assert float(weighted["detection.weight"]) == 0.5 and float(weighted["segmentation.weight"]) == 1.0


def test_task_weights_for_unknown_task_rejected(tiny_blocks):
    with pytest.raises(ValueError, match=r"names tasks no head predicts: \['dpeth'\]"):
        build(tiny_blocks, task_weighting=dict(type="FixedTaskWeighting", weights=dict(dpeth=1.0)))


def test_predict_fills_every_task(tiny_blocks, batch):
    model = build(tiny_blocks).eval()
    inputs, samples = batch([("detection",), ("depth",)])
    out = model(inputs, samples, mode="predict")
    for s in out:
        assert "pred_instances" in s and "pred_sem_seg" in s and "pred_depth_map" in s
        assert s.pred_sem_seg.data.shape[-2:] == (64, 64)


def test_tensor_mode_returns_raw_head_outputs(tiny_blocks):
    model = build(tiny_blocks).eval()
    out = model(torch.randn(2, 3, 64, 64), mode="tensor")
    assert set(out) == {"det_head", "seg_head", "depth_head"}
    assert out["seg_head"].shape[:2] == (2, 4)
    only = model.tensor(torch.randn(1, 3, 64, 64), heads=["depth_head"])
    assert set(only) == {"depth_head"}


def test_predict_per_head_separates_heads_and_matches_predict(tiny_blocks, batch):
    model = build(tiny_blocks).eval()
    inputs, samples = batch([("detection",), ("depth",)])
    per_head = model.predict_per_head(inputs, samples)
    joint = model.predict(inputs, [s.clone() for s in samples])
    fields = {"det_head": "pred_instances", "seg_head": "pred_sem_seg", "depth_head": "pred_depth_map"}
    assert set(per_head) == set(fields)
    for head, field in fields.items():
        for sample, own, both in zip(samples, per_head[head], joint, strict=True):
            # only this head's predictions, no ground truth, the inputs' metainfo
            assert [k for k in own.keys() if k.startswith(("pred_", "gt_"))] == [field]
            assert own.metainfo == sample.metainfo
            mine, theirs = getattr(own, field), getattr(both, field)
            for key in theirs.keys():
                torch.testing.assert_close(getattr(mine, key), getattr(theirs, key))
    assert "pred_instances" not in samples[0]  # the given samples are left untouched


def test_block_outputs_run_any_block(tiny_blocks):
    model = build(tiny_blocks).eval()
    img = torch.randn(1, 3, 64, 64)
    out = model.block_outputs(img, ["neck", "depth_head"])
    assert set(out) == {"neck", "depth_head"}
    torch.testing.assert_close(out["depth_head"], model.tensor(img, heads=["depth_head"])["depth_head"])
    with pytest.raises(KeyError, match=r"no block named 'nekc'; blocks: backbone, neck"):
        model.block_outputs(img, ["nekc"])


def test_wrong_in_channels_names_the_edge(tiny_blocks):
    tiny_blocks[1]["in_channels"] = [256, 256]
    with pytest.raises(GraphError, match=r"edge backbone\.layer3, backbone\.layer4 -> neck: in_channels\[1\]=256 "
                                         r"but input 1 has 512 channels"):  # fmt: skip
        build(tiny_blocks)


def test_head_channels_checked(tiny_blocks):
    tiny_blocks[4]["in_channels"] = 64
    with pytest.raises(GraphError, match=r"edge neck\.0 -> depth_head: expects in_channels=64"):
        build(tiny_blocks)


def test_unknown_sub_output_lists_available(tiny_blocks):
    tiny_blocks[1]["inputs"] = ["backbone.layer3", "backbone.stage4"]
    with pytest.raises(
        GraphError, match=r"input 'backbone\.stage4': no sub-output 'stage4'; available: .*layer4"
    ):
        build(tiny_blocks)


def test_unknown_type_lists_close_matches(tiny_blocks):
    tiny_blocks[0]["type"] = "ResNett"
    with pytest.raises(
        GraphError, match=r"block 'backbone': unknown block type 'ResNett'; close matches: .*ResNet"
    ):
        build(tiny_blocks)


def test_unknown_scoped_type_lists_close_matches(tiny_blocks):
    tiny_blocks[2]["type"] = "mmdet.FCOSHed"
    with pytest.raises(GraphError, match=r"'mmdet\.FCOSHed' is not in the mmdet model registry; close matches: "
                                         r"mmdet\.FCOSHead"):  # fmt: skip
        build(tiny_blocks)


def test_bad_block_kwargs_name_the_block(tiny_blocks):
    tiny_blocks[0]["depht"] = 18
    with pytest.raises(GraphError, match=r"block 'backbone' \(ResNet\) could not be built: .*depht"):
        build(tiny_blocks)


# ------------------------------------------------------------------------------------------------ adapters
@pytest.fixture
def register_adapter():
    """Register adapter classes for one test, removed afterwards."""
    from multitask_vision.registry import ADAPTERS

    added = []

    def register(cls):
        ADAPTERS.register_module(module=cls)
        added.append(cls.__name__)
        return cls

    yield register
    for name in added:
        ADAPTERS.module_dict.pop(name)


def test_each_scope_gets_the_adapter_that_declares_it(tiny_blocks, register_adapter):
    from multitask_vision.models.adapters import MMDetAdapter, MMSegAdapter, NativeAdapter, default_adapter

    assert [default_adapter(s) for s in ("multitask_vision", "mmdet", "mmseg", "mmpretrain")] == [
        "NativeAdapter", "MMDetAdapter", "MMSegAdapter", None,
    ]  # fmt: skip
    assert {type(a) for a in build(tiny_blocks).adapters.values()} == {NativeAdapter}

    @register_adapter
    class LoggingMMDetAdapter(MMDetAdapter):  # a subclass declares no scope: it serves only blocks naming it
        pass

    assert default_adapter("mmdet") == "MMDetAdapter"
    assert {MMSegAdapter.scope, NativeAdapter.scope} == {"mmseg", "multitask_vision"}


def test_an_adapter_named_by_a_block_is_used(tiny_blocks, register_adapter):
    from multitask_vision.models.adapters import NativeAdapter

    @register_adapter
    class CountingAdapter(NativeAdapter):
        calls = 0

        def forward(self, module, x):
            type(self).calls += 1
            return module(x)

    tiny_blocks[0]["adapter"] = "CountingAdapter"
    model = build(tiny_blocks)
    assert type(model.adapters["backbone"]) is CountingAdapter
    assert type(model.adapters["neck"]) is NativeAdapter
    model.tensor(torch.randn(1, 3, 64, 64))
    assert CountingAdapter.calls == 1


def test_adapter_errors_name_the_block(tiny_blocks, register_adapter):
    from multitask_vision.models.adapters import NativeAdapter

    tiny_blocks[1]["adapter"] = "NoSuchAdapter"
    with pytest.raises(
        GraphError, match=r"block 'neck': no adapter 'NoSuchAdapter' for scope 'multitask_vision'"
    ):
        build(tiny_blocks)

    @register_adapter
    class SecondNativeAdapter(NativeAdapter):
        scope = "multitask_vision"

    tiny_blocks[1].pop("adapter")
    with pytest.raises(GraphError, match=r"block 'backbone': adapters \['NativeAdapter', 'SecondNativeAdapter'\] "
                                         r"all declare scope 'multitask_vision'"):  # fmt: skip
        build(tiny_blocks)


def test_heads_sharing_a_task_name_their_losses_by_head(tiny_blocks, batch):
    from mmengine.model import BaseModel

    seg_b = dict(tiny_blocks[3], name="seg_b", num_convs=0)
    model = build(
        tiny_blocks[:4] + [seg_b],
        task_weighting=dict(type="FixedTaskWeighting", weights=dict(segmentation=0.5)),
    )
    inputs, samples = batch([("segmentation",), ("detection",)])
    losses = model(inputs, samples, mode="loss")
    assert {k for k in losses if k.startswith("segmentation.")} == {
        "segmentation.seg_head.loss_seg", "segmentation.seg_head.acc_seg", "segmentation.seg_b.loss_seg",
        "segmentation.seg_b.acc_seg", "segmentation.weight",
    }  # fmt: skip
    torch.manual_seed(0)
    alone = MultiTaskModel(blocks=tiny_blocks[:4] + [seg_b])(inputs, samples, mode="loss")
    for head in ("seg_head", "seg_b"):  # the task's weight reaches both heads' loss terms, not their accuracy
        key = f"segmentation.{head}.loss_seg"
        torch.testing.assert_close(losses[key], 0.5 * alone[key])
        torch.testing.assert_close(
            losses[f"segmentation.{head}.acc_seg"], alone[f"segmentation.{head}.acc_seg"]
        )
    total, _ = BaseModel.parse_losses(model, losses)
    expected = sum(
        v for k, v in losses.items() if k.endswith(("loss_seg", "loss_cls", "loss_bbox", "centerness"))
    )
    torch.testing.assert_close(total, expected)
