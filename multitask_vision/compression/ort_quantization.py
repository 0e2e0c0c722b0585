"""ONNX Runtime int8 of an exported fp32 ONNX file: ``quantize_static`` (QDQ, per-channel int8 weights, uint8
activations: the fast kernels on x86) calibrated on normalised batches, or ``quantize_dynamic``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor


class _Reader:
    """ONNX Runtime calibration data reader over normalised batches."""

    def __init__(self, batches: Sequence[Tensor], input_name: str) -> None:
        # one image per call: works for static batch-1 graphs too, and the ranges are the same
        images = [img[None].numpy().astype(np.float32) for b in batches for img in b]
        self._it = iter([{input_name: x} for x in images])

    def get_next(self):
        return next(self._it, None)


def ort_quantize_static(src: Path, dst: Path, batches: Sequence[Tensor], observer: str) -> Path:
    """QDQ, per-channel int8 weights, **uint8 activations** (QUInt8: the fast x86 kernels; int8 activations were
    slower when measured), calibrated by min-max or by the 99.999th percentile of a histogram."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Reader, CalibrationDataReader):
        pass

    method = CalibrationMethod.MinMax if observer == "minmax" else CalibrationMethod.Percentile
    with quiet_onnxruntime_logging():
        quantize_static(
            str(src),
            str(dst),
            Reader(batches, "input"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    return dst


def ort_quantize_dynamic(src: Path, dst: Path) -> Path:
    """Weights int8 (per channel), activations quantized at run time (``ConvInteger`` / ``MatMulInteger``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnxruntime_logging():
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QUInt8)
    return dst


@contextlib.contextmanager
def quiet_onnxruntime_logging(level: int = logging.ERROR):
    """Inside: ONNX Runtime's quantization logs only at ``level`` and above; nothing else changes.

    ``onnxruntime.quantization`` logs both through its own loggers (``onnxruntime.*``) and through the root
    logger's module functions (``logging.warning(...)``: advice about pre-processing, per-tensor notes). The
    first are raised to ``level``; the second are dropped by a filter on the root logger that only matches
    records whose code lives in the onnxruntime package (a logger's filters see only the records logged to it
    directly, so other code's loggers are untouched). Levels and filters are restored on exit."""
    import onnxruntime

    package = str(Path(onnxruntime.__file__).resolve().parent)

    def not_onnxruntime(record: logging.LogRecord) -> bool:
        return record.levelno >= level or not str(Path(record.pathname).resolve()).startswith(package)

    root, own = logging.getLogger(), logging.getLogger("onnxruntime")
    old_level = own.level
    own.setLevel(max(old_level, level))
    root.addFilter(not_onnxruntime)
    try:
        yield
    finally:
        root.removeFilter(not_onnxruntime)
        own.setLevel(old_level)
