"""Quantization-aware training as an mmengine hook (torchao PT2E, x86 int8).

``custom_hooks = [dict(type='QATHook', start_iter=500)]``: at ``start_iter`` the model's units (trunk blocks,
head towers and prediction convs, see :mod:`multitask_vision.compression.pt2e`) are exported and
prepared with fake quantization in place; training continues through the heads' own losses with the same
optimizer (the prepared graphs hold the same ``Parameter`` objects). ``model.train()`` / ``.eval()`` (the
train and validation loops call them) switch the graphs' batch norm between training and inference forms.
After training the units are converted to int8 and the whole model in tensor mode is saved as an
``ExportedProgram`` under ``work_dir`` (``torch.export.load`` reads it; outputs named as in the ONNX export).

Why PT2E per unit and not eager ``torch.ao`` QAT: the eager API is deprecated on torch 2.12 and needs
quant/dequant stubs and ``FloatFunctional`` in every residual block (torchvision's ResNet has neither); a single
exported graph of the whole model cannot train, because the heads compute their loss from their own forward.

Limits: single process (a DDP-wrapped model cannot have its modules swapped under it); ``--resume`` of a
checkpoint written after ``start_iter`` is not supported (it holds fake-quant state the fresh model lacks).
"""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from multitask_vision.compression.export import ExportWrapper, export_program
from multitask_vision.compression.pt2e import convert_units, prepare_units
from multitask_vision.registry import HOOKS


@HOOKS.register_module()
class QATHook(Hook):
    """Prepare for QAT at ``start_iter``, convert to int8 and save after training. Fake quantization is
    torchao's x86 QAT default: moving-average min-max activation ranges, per-channel int8 weights.

    Args:
        start_iter: iteration at which fake quantization starts (0: from the first iteration).
        save_name: file name of the int8 ``ExportedProgram`` under ``work_dir`` (None: do not save).
    """

    priority = "LOW"

    def __init__(self, start_iter: int = 0, save_name: str | None = "qat_int8.pt2") -> None:
        if isinstance(start_iter, bool) or not isinstance(start_iter, int) or start_iter < 0:
            raise ValueError(f"QATHook: start_iter must be an int >= 0, got {start_iter!r}")
        self.start_iter = start_iter
        self.save_name = save_name
        self.prepared: list[str] = []
        self.converted = False
        self.saved_path: Path | None = None
        self._example: torch.Tensor | None = None

    @staticmethod
    def _model(runner):
        if is_model_wrapper(runner.model):
            raise ValueError("QATHook supports single-process training only (the model is wrapped for DDP)")
        return runner.model

    def before_train(self, runner) -> None:
        if runner.iter > self.start_iter:
            raise ValueError(
                f"QATHook: training resumes at iter {runner.iter}, after start_iter={self.start_iter}; "
                "resuming a QAT run is not supported: restart it, or raise start_iter"
            )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.prepared or runner.iter < self.start_iter:
            return
        model = self._model(runner)
        optimizer = runner.optim_wrapper.optimizer
        before = {id(p) for g in optimizer.param_groups for p in g["params"]}
        with torch.no_grad():
            img = model.data_preprocessor(data_batch, False)["inputs"]
        if img.shape[0] < 2:
            img = torch.cat([img, img])
        self._example = img[:2].detach().clone()
        self.prepared = prepare_units(model, img, qat=True)
        now = {id(p) for p in model.parameters() if p.requires_grad}
        if not now <= before:  # the optimizer would silently stop training the new tensors
            raise RuntimeError("QATHook: prepared graphs hold parameters the optimizer does not know")
        runner.logger.info(
            f"QATHook: iter {runner.iter}: fake quantization in {len(self.prepared)} units "
            f"({', '.join(self.prepared[:4])}{', ...' if len(self.prepared) > 4 else ''})"
        )

    def after_train(self, runner) -> None:
        if not self.prepared:
            runner.logger.warning(
                f"QATHook: training ended before start_iter={self.start_iter}: nothing converted"
            )
            return
        model = self._model(runner)
        convert_units(model)
        self.converted = True
        if self.save_name and self._example is not None:
            wrapper = ExportWrapper(model, self._example)
            self.saved_path = export_program(wrapper, self._example, Path(runner.work_dir) / self.save_name)
            runner.logger.info(
                f"QATHook: int8 model (tensor mode, outputs {wrapper.output_names}) saved to {self.saved_path}"
            )
