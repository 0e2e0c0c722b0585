"""``MultiTaskInferencer``: a trained (or deployed) multi-task model on your own images.

    from multitask_vision.apis import MultiTaskInferencer

    inferencer = MultiTaskInferencer("configs/quickstart.py", "work_dirs/quickstart/iter_1300.pth")
    results = inferencer(["a.jpg", "photos/", "more/*.png", bgr_array], batch_size=8)
    results[0]["heads"]["det_head"]      # {'task', 'bboxes' (N, 4) xyxy, 'scores', 'labels', 'class_names'}
    results[0]["heads"]["seg_head"]      # {'task', 'label_map' (H, W) int64, 'classes'}
    results[0]["heads"]["depth_head"]    # {'task', 'depth' (H, W) float32 metres}

    onnx = MultiTaskInferencer("configs/quickstart.py", onnx="deploy_out/quickstart/model_int8.onnx")

The config gives the model, the pre-processing (its test pipeline without annotation loading, then the model's
data preprocessor: normalisation and padding) and each task's class names (the metainfo of the sources that
label it). Predictions are in original image coordinates, decoded as the model's ``predict`` decodes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from multitask_vision.apis.backends import OnnxBackend, TorchBackend
from multitask_vision.apis.inputs import (
    CHANNEL_ORDERS,
    InputError,
    InputItem,
    Skipped,
    chunks,
    resolve_inputs,
)
from multitask_vision.apis.pipeline import config_test_pipeline, inference_pipeline, lazy_sources
from multitask_vision.apis.results import head_result
from multitask_vision.models.builder import as_config, build_model
from multitask_vision.registry import SCOPE
from multitask_vision.visualization.grid import task_styles

STAGES = ("preprocess", "model", "decode")


@dataclass
class ImagePrediction:
    """One image's predictions: ``heads`` in plain Python and numpy (:meth:`as_dict`), the data samples each
    head wrote (``samples``, for drawers), and the image as loaded (``image``, BGR, original size)."""

    name: str
    path: str | None
    image: np.ndarray
    heads: dict[str, dict[str, Any]]
    samples: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def as_dict(self) -> dict[str, Any]:
        return dict(name=self.name, path=self.path, size=self.size, heads=self.heads)


@dataclass
class InferenceStats:
    """Images run and skipped, and seconds spent per stage (pre-process, model, decode) and in all."""

    images: int = 0
    skipped: Skipped = field(default_factory=Skipped)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall: float = 0.0

    def summary(self, unit: str = "images") -> str:
        per = ", ".join(f"{s} {1e3 * self.seconds[s] / max(self.images, 1):.1f} ms" for s in STAGES)
        rate = self.images / self.wall if self.wall > 0 else 0.0
        skipped = f" ({len(self.skipped)} skipped)" if len(self.skipped) else ""
        return f"{self.images} {unit}{skipped}; mean per image: {per}; throughput {rate:.1f} {unit}/s"


class MultiTaskInferencer:
    """Run a config's model on images: from a trained ``checkpoint`` (PyTorch, CPU or CUDA; a Runner checkpoint,
    a state dict or a pruned model file of ``deploy.py``) or from an ``onnx`` file of ``deploy.py``
    (``model_fp32.onnx``, ``model_int8.onnx``; ONNX Runtime).

    Args:
        config: the training config (path, ``Config`` or dict).
        checkpoint: its trained weights; exclusive with ``onnx``.
        onnx: an exported file of that config (its manifest ``<file>.json`` beside it is checked when present).
        heads: the heads to run (default all; with ``onnx``, all the file exports): only the trunk they need runs.
        device: ``cpu`` / ``cuda`` (default: cuda when available, for a checkpoint).
        batch_size: images per forward pass. channel_order: of numpy array inputs, ``'bgr'`` (OpenCV) or ``'rgb'``.
        score_thr: leave out boxes scored below (default: keep what the head's own decoding keeps).
        pipeline: transforms replacing the config's test pipeline. cfg_options: overrides of config keys.
        threads: ONNX Runtime intra-op threads (0: its default).
    """

    def __init__(
        self,
        config: Any,
        checkpoint: str | Path | None = None,
        *,
        onnx: str | Path | None = None,
        heads: Sequence[str] | None = None,
        device: str | None = None,
        batch_size: int = 1,
        channel_order: str = "bgr",
        score_thr: float | None = None,
        pipeline: Sequence[Any] | None = None,
        cfg_options: dict | None = None,
        threads: int = 0,
    ) -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if (checkpoint is None) == (onnx is None):
            raise ValueError("give a checkpoint (PyTorch) or onnx= (a file of deploy.py), one of the two")
        cfg = as_config(config, cfg_options)
        name = str(config) if isinstance(config, (str, Path)) else (cfg.filename or "the config")
        with DefaultScope.overwrite_default_scope(SCOPE):
            if onnx is not None:
                model = build_model(cfg, None, device="cpu")
                self.backend: TorchBackend | OnnxBackend = OnnxBackend(
                    onnx, model, heads, config_name=name, device=device or "cpu", threads=threads
                )
            else:
                device = device or ("cuda" if torch.cuda.is_available() else "cpu")
                model = build_model(cfg, checkpoint, device=device)
                self.backend = TorchBackend(model, heads, device)
            specs = pipeline if pipeline is not None else config_test_pipeline(cfg)
            self.loader, self.transforms = inference_pipeline(specs, self.backend.fixed_input_hw)
            self.backend.check_pipeline(self.transforms)
            self.styles = task_styles(lazy_sources(cfg))
        self.cfg, self.model = cfg, model
        self.heads = {h: str(model.graph.nodes[h].task) for h in self.backend.heads}
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.channel_order = channel_order
        self.score_thr = score_thr
        self.last_stats = InferenceStats()

    def __call__(self, inputs: Any, batch_size: int | None = None) -> list[dict[str, Any]]:
        """Per image, in input order: ``dict(name, path, size=(H, W), heads={head: result})``; the run's
        counts and timings are in :attr:`last_stats`."""
        stats = InferenceStats()
        out = [p.as_dict() for batch in self.predict_batches(inputs, batch_size, stats) for p in batch]
        self.last_stats = stats
        return out

    def resolve(self, inputs: Any, skipped: Skipped | None = None) -> list[InputItem]:
        """The images ``inputs`` names (see :func:`~multitask_vision.apis.inputs.resolve_inputs`)."""
        items, found = resolve_inputs(inputs, self.channel_order)
        if skipped is not None:
            skipped.items += found.items
        return items

    def predict_batches(
        self, inputs: Any, batch_size: int | None = None, stats: InferenceStats | None = None
    ) -> Iterator[list[ImagePrediction]]:
        """Batches of :class:`ImagePrediction` (``inputs`` as for :meth:`__call__`, or resolved
        :class:`InputItem` s); counts and timings accumulate in ``stats``."""
        stats = stats if stats is not None else InferenceStats()
        if isinstance(inputs, list) and inputs and all(isinstance(i, InputItem) for i in inputs):
            items = inputs
        else:
            items = self.resolve(inputs, stats.skipped)
        for group in chunks(items, batch_size or self.batch_size):
            t0 = time.perf_counter()
            batch = self.predict_items(group, stats)
            stats.wall += time.perf_counter() - t0
            if batch:
                yield batch

    def predict_items(self, items: Sequence[InputItem], stats: InferenceStats) -> list[ImagePrediction]:
        """One batch: pre-process (read, test pipeline, collate, data preprocessor), model, decode."""
        t0 = time.perf_counter()
        kept, images, packed = [], [], []
        for item in items:
            try:
                results = self.loader(item.path if item.array is None else item.array)
            except Exception as e:  # noqa: BLE001 - any decoder failure means an unreadable image
                if not item.listed:
                    raise InputError(f"cannot read image {item.path}: {e}") from None
                stats.skipped.add(str(item.path), f"cannot read it as an image ({e})")
                continue
            kept.append(item)
            images.append(results["img"])
            packed.append(self._transform(results))
        if not kept:
            return []
        with torch.no_grad():
            data = self.model.data_preprocessor(pseudo_collate(packed), False)
        samples = data["data_samples"]
        inputs = self.backend.fit(data["inputs"], samples)
        t1 = time.perf_counter()
        outputs = self.backend.run(inputs)
        t2 = time.perf_counter()
        per_head = self.backend.decode(outputs, samples)
        preds = []
        for i, (item, image) in enumerate(zip(kept, images)):
            mine = {h: per_head[h][i] for h in self.heads}
            heads = {
                h: head_result(s, self.heads[h], self.classes(h), self.score_thr) for h, s in mine.items()
            }
            preds.append(ImagePrediction(item.name, item.path, image, heads, mine))
        t3 = time.perf_counter()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            stats.seconds[stage] += seconds
        stats.images += len(preds)
        return preds

    def _transform(self, results: dict) -> dict:
        for t in self.transforms:
            results = t(results)
            if results is None:
                raise ValueError(f"the test pipeline's {type(t).__name__} dropped the image")
        return results

    def classes(self, head: str) -> tuple[str, ...] | None:
        """Class names of a head's task (from the config's sources), or None when no source names them."""
        return self.styles.get(self.heads[head], {}).get("classes")
