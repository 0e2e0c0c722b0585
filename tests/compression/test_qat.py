"""Quantization-aware training from a training config: QATHook prepares at start_iter, trains, converts."""

from __future__ import annotations

import torch

from tests.compression.conftest import TINY_QAT, load_script


def test_qat_config_trains_and_converts(in_workspace):
    ws = in_workspace
    load_script("train").main(["--config", str(TINY_QAT), "--work-dir", str(ws / "qat")])
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
