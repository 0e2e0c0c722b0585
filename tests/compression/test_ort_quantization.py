"""ONNX Runtime quantization keeps its advice off the console without touching anyone else's logging."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from multitask_vision.compression.ort_quantization import ort_quantize_dynamic, quiet_onnxruntime_logging


@pytest.fixture
def tiny_onnx(tmp_path):
    weight = numpy_helper.from_array(np.random.default_rng(0).random((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["out"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [weight],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def records():
    """Every record that reaches the root logger's handlers, whatever the levels."""
    got: list[logging.LogRecord] = []

    class Grab(logging.Handler):
        def emit(self, record):
            got.append(record)

    root = logging.getLogger()
    handler, old_level = Grab(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield got
    root.removeHandler(handler)
    root.setLevel(old_level)


def from_onnxruntime(records):
    return [r for r in records if "onnxruntime" in r.pathname]


def test_onnxruntime_advice_is_dropped_and_logging_left_as_it_was(tiny_onnx, records):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the advice is real: onnxruntime logs it through the root logger's module functions
    quantize_dynamic(str(tiny_onnx), str(tiny_onnx.with_name("plain.onnx")), weight_type=QuantType.QUInt8)
    assert any(r.levelno == logging.WARNING for r in from_onnxruntime(records))
    records.clear()

    root = logging.getLogger()
    state = (root.level, list(root.filters), logging.getLogger("onnxruntime").level)
    ort_quantize_dynamic(tiny_onnx, tiny_onnx.with_name("int8.onnx"))
    assert tiny_onnx.with_name("int8.onnx").is_file()
    assert from_onnxruntime(records) == []
    # the old helper raised the root logger to ERROR for the rest of the process
    assert (root.level, list(root.filters), logging.getLogger("onnxruntime").level) == state
    logging.getLogger("mine").info("after")
    assert [r.getMessage() for r in records] == ["after"]


def test_other_code_logs_normally_inside(records):
    with quiet_onnxruntime_logging():
        logging.warning("root warning of ours")
        logging.getLogger("mine").info("named info of ours")
    assert [r.getMessage() for r in records] == ["root warning of ours", "named info of ours"]
