"""The registered quantization steps of a deploy config (``quantization=dict(method=...)``).

* ``static``: post-training int8 calibrated on training batches of every source, with torchao PT2E on the
  PyTorch model (:mod:`multitask_vision.compression.pt2e`) and/or ONNX Runtime on the exported ONNX file
  (:mod:`multitask_vision.compression.ort_quantization`);
* ``dynamic``: ONNX Runtime dynamic int8;
* ``qat``: quantization-aware fine-tuning through PT2E (:class:`multitask_vision.compression.qat_hook.QATHook`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from multitask_vision.compression.ort_quantization import ort_quantize_dynamic, ort_quantize_static
from multitask_vision.compression.pt2e import OBSERVERS, calibrate, convert_units, prepare_units
from multitask_vision.registry import COMPRESSION

if TYPE_CHECKING:
    from multitask_vision.models.multitask_model import MultiTaskModel

BACKENDS = ("x86", "onnxruntime")


def _backends(backend: str | Sequence[str]) -> tuple[str, ...]:
    names = (backend,) if isinstance(backend, str) else tuple(backend)
    bad = [b for b in names if b not in BACKENDS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"quantization.backend must be one of {BACKENDS} or a list of them, got {backend!r}")
    return names


class QuantizationStep:
    """Base of the quantization steps. :attr:`backends`: ``x86`` (torchao PT2E on the PyTorch model) and/or
    ``onnxruntime`` (int8 ONNX from the exported fp32 ONNX file). A step that has one backend only fixes it
    (no config key)."""

    method = ""
    backends: tuple[str, ...] = ()

    @property
    def torch_side(self) -> bool:
        return "x86" in self.backends

    @property
    def onnx_side(self) -> bool:
        return "onnxruntime" in self.backends


@COMPRESSION.register_module()
class StaticQuantization(QuantizationStep):
    """Post-training static int8, calibrated on real training batches from every source.

    Args:
        observer: ``'minmax'`` or ``'histogram'`` (activation ranges; weights are per-channel min-max).
        backend: ``'x86'``, ``'onnxruntime'`` or both (``['x86', 'onnxruntime']``).
        calib_samples: calibration images, split evenly over the training sources.
    """

    method = "static"

    def __init__(
        self, *, observer: str = "minmax", backend: str | Sequence[str] = "x86", calib_samples: int = 64
    ) -> None:
        self.backends = _backends(backend)
        if observer not in OBSERVERS:
            raise ValueError(f"quantization.observer must be one of {OBSERVERS}, got {observer!r}")
        self.observer = observer
        if isinstance(calib_samples, bool) or not isinstance(calib_samples, int) or calib_samples < 2:
            raise ValueError(f"quantization.calib_samples must be an int >= 2, got {calib_samples!r}")
        self.calib_samples = calib_samples

    def quantize_torch(self, model: MultiTaskModel, batches: Sequence[Tensor], progress: Any = None) -> dict:
        prepared = prepare_units(model, batches[0], qat=False, observer=self.observer)
        n = calibrate(model, batches, progress)
        convert_units(model)
        return dict(units=len(prepared), calibration_images=n)

    def quantize_onnx(self, src: Path, dst: Path, batches: Sequence[Tensor]) -> Path:
        return ort_quantize_static(src, dst, batches, self.observer)


@COMPRESSION.register_module()
class DynamicQuantization(QuantizationStep):
    """Dynamic int8 (weights int8, activation ranges computed at run time) of the exported ONNX file by ONNX
    Runtime: ``quantization=dict(method='dynamic')``, no other key. ONNX Runtime only, because torchao's x86
    dynamic config quantizes ``nn.Linear`` alone and these models compute in convolutions."""

    method = "dynamic"
    backends = ("onnxruntime",)

    def quantize_onnx(self, src: Path, dst: Path, batches: Sequence[Tensor]) -> Path:
        return ort_quantize_dynamic(src, dst)


@COMPRESSION.register_module()
class QATQuantization(QuantizationStep):
    """Quantization-aware training through torchao PT2E (x86 int8): ``quantization=dict(method='qat')``, no
    other key. The fine-tuning run (``finetune=dict(iters=N)``) trains with fake quantization
    (:class:`multitask_vision.compression.qat_hook.QATHook`, torchao's moving-average min-max fake quant) and
    converts to int8 at the end."""

    method = "qat"
    backends = ("x86",)
