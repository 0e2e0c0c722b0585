"""The contract every native block follows (our own backbones, necks and heads).

* ``in_channels``: what the block expects from its inputs (int: every incoming tensor; list: one per
  tensor, in order; ``None``: the block reads images and declares nothing). Checked by the graph at build time.
* ``output_spec(input_spec)``: the channels/stride of what ``forward`` returns, with the same structure
  (tensor -> FeatureSpec, dict -> dict, tuple -> tuple). A contract test checks it against real outputs.

Heads (:class:`TaskHead`) add the mmdet-style pair ``loss(x, data_samples) -> dict`` and
``predict(x, data_samples) -> None`` (writes ``pred_*`` fields, in original image coordinates), and
``forward(x)`` returns raw tensors for ``mode='tensor'`` and export. A head knows its own ground-truth
format; the model does not. It also declares what it outputs (``output_names``: how the exported outputs are
named) and how a runtime decodes them without the model (``runtime_manifest()``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multitask_vision.models.spec import Spec


class Block(nn.Module):
    in_channels: Any = None

    def output_spec(self, input_spec: Spec) -> Spec:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must publish output_spec()")


class TaskHead(Block):
    """A head: ``forward`` gives raw outputs; ``loss``/``predict`` own the task's GT and prediction format.

    ``predict`` is ``forward`` then ``predict_by_feat`` (mmdet's/mmseg's name for the same split): decoding
    from the raw outputs alone is what scores an exported model from ONNX Runtime's outputs.

    ``output_names``: the names of ``forward``'s outputs in an export, ``<head>.<name>``: one string for a
    tensor output; a tuple of one name per entry for a tuple output, where an entry that is a list of
    per-level tensors becomes ``<name>_<level>`` (``('cls', 'bbox', 'ctr')`` -> ``det_head.cls_0`` ...). None:
    generic names (``out``, ``<j>``, ``out<j>_<level>``).
    """

    output_names: tuple[str, ...] | str | None = None

    def loss(self, x: Any, data_samples: list) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, x: Any, data_samples: list) -> None:
        """Write predictions (original image coordinates) into ``data_samples``."""
        self.predict_by_feat(self(x), data_samples)

    def predict_by_feat(self, outputs: Any, data_samples: list) -> None:  # pragma: no cover - abstract
        """The same from ``forward``'s raw outputs."""
        raise NotImplementedError(f"{type(self).__name__} does not decode raw outputs (predict_by_feat)")

    def runtime_manifest(self) -> dict[str, Any] | None:
        """How a runtime decodes this head's exported outputs without the model: ``dict(kind=..., **params)``
        for a decoder of :mod:`multitask_vision.compression.postprocess` (``'fcos'``, ``'seg'``, ``'depth'``),
        the same functions ``predict_by_feat`` uses (:mod:`multitask_vision.models.heads.decoding`). None: no
        runtime decoder; an exported file of this head is decoded by ``predict_by_feat`` itself."""
        return None
