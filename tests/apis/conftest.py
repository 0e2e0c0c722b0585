"""Shared fixtures of the inference tests: the tiny synthetic data, a checkpoint of the tiny model (seeded init,
its classifier bias raised so that detection has boxes to keep), and that model exported the way deploy.py exports
it (fp32 ONNX + manifest), generated once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.compression.conftest import TINY, build, tiny_data_in

CHECKPOINT = "tiny.pth"
ONNX = "model_fp32.onnx"


def export_like_deploy(model, path: Path, size=(64, 64)) -> None:
    """``model_fp32.onnx`` and its manifest ``model_fp32.json``, as deploy.py's export stage writes them."""
    from multitask_vision.compression.export import ExportWrapper, export_onnx
    from multitask_vision.compression.postprocess import build_manifest

    example = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    wrapper = ExportWrapper(model, example)
    export_onnx(wrapper, example, path, opset=18, dynamic_batch=True)
    path.with_suffix(".json").write_text(json.dumps(build_manifest(model, wrapper.output_names), indent=2))


@pytest.fixture(scope="session")
def infer_workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("infer")
    with tiny_data_in(ws, splits=("val",)):
        model = build(TINY)
        with torch.no_grad():  # scores above the head's threshold, so NMS and the box outputs have work
            model.blocks.det_head.conv_cls.bias.fill_(0.0)
        torch.save(dict(meta=dict(), state_dict=model.state_dict()), ws / CHECKPOINT)
        export_like_deploy(model, ws / ONNX)
    return ws


@pytest.fixture
def ws(infer_workspace, monkeypatch):
    """The workspace as the working directory (the tiny config's data_root is relative), one thread."""
    monkeypatch.chdir(infer_workspace)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield infer_workspace
    torch.set_num_threads(old)
