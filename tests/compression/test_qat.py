"""Quantization-aware training from a training config: QATHook prepares at start_iter, trains, converts."""

from __future__ import annotations

import torch
from mmengine.runner import Runner

from multitask_vision.engine.launch import load_config
from tests.compression.conftest import TINY_QAT


def test_qat_config_trains_and_converts(in_workspace):
    """What train.py does with the config (mmengine's Runner), in this process: torchao's conv-bn patterns
    are then traced once for this test and the QAT deployment test."""
    ws = in_workspace
    Runner.from_cfg(load_config(str(TINY_QAT), work_dir=str(ws / "qat"))).train()
    log = next((ws / "qat").glob("*/*.log")).read_text()
    assert "QATHook: iter 1: fake quantization in" in log  # prepared at start_iter=1, then trained on
    assert "Iter(train) [3/3]" in log
    path = ws / "qat" / "qat_int8.pt2"
    program = torch.export.load(str(path))  # weights-only safe format
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops) and any(
        "dequantize_per_channel" in op for op in ops
    )
    outs = program.module()(torch.randn(3, 3, 64, 64))
    assert len(outs) == 8  # det_head cls/bbox/ctr at 2 levels, seg logits, depth
    assert outs[0].shape == (3, 4, 8, 8) and all(torch.isfinite(o).all() for o in outs)
