"""The runtime helper decodes raw outputs exactly as the heads' own predict does; pre-processing matches."""

from __future__ import annotations

import numpy as np
import torch

from multitask_vision.compression.export import ExportWrapper
from multitask_vision.compression.postprocess import build_manifest, decode, fill_data_samples, preprocess
from multitask_vision.compression.report import fill_exported_predictions
from tests.compression.conftest import TINY_MMLAB, build
from tests.conftest import make_sample


def test_decoding_matches_head_predict():
    model = build()
    with torch.no_grad():  # lift the random init's scores above the threshold so NMS has work to do
        model.blocks.det_head.conv_cls.bias.fill_(0.0)
    img = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    meta = dict(img_shape=(56, 60), ori_shape=(112, 120), scale_factor=(0.5, 0.5))
    ref = [make_sample(("detection", "segmentation", "depth"), seed=i) for i in range(2)]
    ours = [make_sample(("detection", "segmentation", "depth"), seed=i) for i in range(2)]
    for s in ref + ours:
        s.set_metainfo(meta)
    model.predict(img, ref)
    wrapper = ExportWrapper(model, img)
    with torch.no_grad():
        outs = dict(zip(wrapper.output_names, wrapper(img)))
    manifest = build_manifest(model, wrapper.output_names)
    assert fill_data_samples(manifest, {k: v.numpy() for k, v in outs.items()}, ours) == []
    for r, o in zip(ref, ours):
        assert len(r.pred_instances) > 10
        for key in ("bboxes", "scores", "labels"):
            torch.testing.assert_close(o.pred_instances[key], r.pred_instances[key])
        assert torch.equal(o.pred_sem_seg.data, r.pred_sem_seg.data) and o.pred_sem_seg.shape == (112, 120)
        torch.testing.assert_close(o.pred_depth_map.data, r.pred_depth_map.data)


def test_numpy_preprocess_matches_the_data_preprocessor():
    model = build()
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 40, 3), dtype=np.uint8),
    ]
    manifest = build_manifest(model, [])
    batch, metas = preprocess(images, manifest["preprocess"])
    data = dict(inputs=[torch.from_numpy(im.transpose(2, 0, 1).copy()) for im in images])
    ref = model.data_preprocessor(data, False)["inputs"]
    assert batch.shape == tuple(ref.shape) == (2, 3, 64, 96)
    np.testing.assert_allclose(batch, ref.numpy(), atol=1e-5)
    assert metas[0]["img_shape"] == (50, 70) and metas[1]["batch_input_shape"] == (64, 96)


def test_openmmlab_heads_decode_flat_exported_outputs_like_predict():
    """Heads the runtime helper does not know (mmdet FCOSHead, mmseg FCNHead): the exported file's flat
    outputs are nested back (wrapper.raw_outputs) and decoded by the heads' own predict_by_feat."""
    model = build(TINY_MMLAB)
    img = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    meta = dict(img_shape=(56, 60), ori_shape=(112, 120), scale_factor=(0.5, 0.5))
    ref = [make_sample(("detection", "segmentation", "depth"), seed=i) for i in range(2)]
    ours = [make_sample(("detection", "segmentation", "depth"), seed=i) for i in range(2)]
    for s in ref + ours:
        s.set_metainfo(meta)
    model.predict(img, ref)
    wrapper = ExportWrapper(model, img)
    assert "det_head.cls_1" in wrapper.output_names and "seg_head.logits" in wrapper.output_names
    with torch.no_grad():
        outs = dict(zip(wrapper.output_names, wrapper(img)))
    manifest = build_manifest(model, wrapper.output_names)
    assert fill_data_samples(manifest, outs, [s.clone() for s in ours]) == ["det_head", "seg_head"]
    fill_exported_predictions(model, manifest, wrapper, outs, ours)
    for r, o in zip(ref, ours):
        assert len(r.pred_instances) > 10
        for key in ("bboxes", "scores", "labels"):
            torch.testing.assert_close(o.pred_instances[key], r.pred_instances[key])
        assert torch.equal(o.pred_sem_seg.data, r.pred_sem_seg.data) and o.pred_sem_seg.shape == (112, 120)
        torch.testing.assert_close(o.pred_depth_map.data, r.pred_depth_map.data)


def test_heads_declare_their_runtime_decoding_for_torch_or_numpy_outputs():
    """The manifest entry of a head is what the head declares (runtime_manifest, output_names); its decoding
    gives the same plain numpy results from a PyTorch model's tensors as from ONNX Runtime's arrays."""
    model = build()
    with torch.no_grad():
        model.blocks.det_head.conv_cls.bias.fill_(0.0)
    img = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    metas = [
        dict(img_shape=(60, 50), ori_shape=(30, 25), batch_input_shape=(64, 64), scale_factor=(2.0, 2.0))
    ] * 2
    wrapper = ExportWrapper(model, img)
    assert wrapper.output_names == [
        *(f"det_head.{tag}_{i}" for tag in ("cls", "bbox", "ctr") for i in range(2)),
        "seg_head.logits",
        "depth_head.depth",
    ]  # the heads' output_names
    manifest = build_manifest(model, wrapper.output_names)
    for entry in manifest["heads"]:
        head = model.blocks[entry["name"]]
        assert {k: entry[k] for k in head.runtime_manifest()} == head.runtime_manifest()
    assert [e["kind"] for e in manifest["heads"]] == ["fcos", "seg", "depth"]
    with torch.no_grad():
        outs = dict(zip(wrapper.output_names, wrapper(img)))
    from_torch = decode(manifest, outs, metas)
    from_numpy = decode(manifest, {k: v.numpy() for k, v in outs.items()}, metas)
    for t, n in zip(from_torch, from_numpy):
        assert len(t["det_head"]["labels"]) > 0
        for key in ("bboxes", "scores", "labels"):
            assert isinstance(t["det_head"][key], np.ndarray)
            np.testing.assert_array_equal(t["det_head"][key], n["det_head"][key])
        assert t["seg_head"].shape == (30, 25) and t["seg_head"].dtype == np.int64
        np.testing.assert_array_equal(t["seg_head"], n["seg_head"])
        assert t["depth_head"].shape == (30, 25) and t["depth_head"].dtype == np.float32
        np.testing.assert_array_equal(t["depth_head"], n["depth_head"])
