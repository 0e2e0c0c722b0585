"""Runtime helper for an exported model: what the graph does not contain (pre-processing, box decoding + NMS,
resizing dense maps back to the image), for the numpy arrays of ONNX Runtime (or a PyTorch model's tensors).

NMS has data-dependent output sizes and per-image loops, so it is left out of the exported graph (as in mmdet's
and mmseg's own deployments); so are the image normalisation and the resizing to each image's original size.
This module needs numpy, torch and torchvision; the manifest (``<name>.json`` beside the ONNX file) carries
every constant, each head's entry as the head declared it (``runtime_manifest()``)::

    manifest = json.load(open("out/model_fp32.json"))
    img, metas = preprocess([cv2.imread("a.jpg")], manifest["preprocess"])     # (1, 3, H, W) float32
    outs = dict(zip(manifest["outputs"], session.run(None, {"input": img})))
    results = decode(manifest, outs, metas)   # [{'det_head': {'bboxes','scores','labels'}, 'seg_head': (H0, W0)
                                              #   int64 labels, 'depth_head': (H0, W0) float32 metres}]

The decoders are the heads' own (:mod:`multitask_vision.models.heads.decoding`: ``AnchorFreeDetHead``,
``SegHead`` and ``DepthHead`` decode their ``predict`` through the same functions), so an exported file and the
PyTorch model it came from give the same predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multitask_vision.models.heads.decoding import decode_depth, decode_fcos, decode_seg


def head_manifest(
    name: str, task: str, module: Any, adapter: Any, output_names: Sequence[str]
) -> dict[str, Any]:
    """What :func:`decode` needs of one head: its declared ``runtime_manifest`` (``kind`` + parameters), or
    ``kind=None`` for a head without one (it decodes its exported outputs with its own ``predict_by_feat``)."""
    entry: dict[str, Any] = dict(name=name, task=task, type=type(module).__name__, kind=None)
    entry["outputs"] = [n for n in output_names if n.startswith(f"{name}.")]
    entry.update(adapter.runtime_manifest(module) or {})
    return entry


def build_manifest(model: Any, output_names: Sequence[str]) -> dict[str, Any]:
    """Pre-processing constants and per-head decoding parameters of an exported model."""
    pre = model.data_preprocessor
    heads = [
        head_manifest(h.name, str(h.task), model.blocks[h.name], model.adapters[h.name], output_names)
        for h in model.graph.heads
        if any(n.startswith(f"{h.name}.") for n in output_names)
    ]
    return dict(
        input="input",
        input_layout="(B, 3, H, W) float32, normalised: RGB, (x - mean) / std, padded bottom/right",
        outputs=list(output_names),
        preprocess=dict(
            mean=[float(v) for v in pre.mean.flatten()],
            std=[float(v) for v in pre.std.flatten()],
            bgr_to_rgb=bool(pre._channel_conversion),
            pad_size_divisor=int(pre.pad_size_divisor),
            pad_value=float(pre.pad_value),
        ),
        heads=heads,
    )


# ------------------------------------------------------------------------------------------ pre-processing
def preprocess(images: Sequence[np.ndarray], cfg: dict[str, Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """HxWx3 uint8 images (BGR as read by OpenCV when ``bgr_to_rgb``) -> (B, 3, Hp, Wp) float32 and metas
    (``img_shape``, ``ori_shape``, ``batch_input_shape``, ``scale_factor``) for :func:`decode`. No resizing."""
    mean = np.asarray(cfg["mean"], np.float32)[:, None, None]
    std = np.asarray(cfg["std"], np.float32)[:, None, None]
    div = int(cfg["pad_size_divisor"])
    hp = max(math.ceil(im.shape[0] / div) * div for im in images)
    wp = max(math.ceil(im.shape[1] / div) * div for im in images)
    # mmengine pads after normalising: the padding holds pad_value in normalised space
    batch = np.full((len(images), 3, hp, wp), cfg["pad_value"], np.float32)
    metas = []
    for i, im in enumerate(images):
        x = im[..., ::-1] if cfg["bgr_to_rgb"] else im
        x = (x.transpose(2, 0, 1).astype(np.float32) - mean) / std  # (3, H, W)
        h, w = im.shape[:2]
        batch[i, :, :h, :w] = x
        metas.append(
            dict(img_shape=(h, w), ori_shape=(h, w), batch_input_shape=(hp, wp), scale_factor=(1.0, 1.0))
        )
    return batch, metas


# ------------------------------------------------------------------------------------------ decoding
def _t(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _head_outputs(entry: dict[str, Any], outputs: dict[str, Any], count: int) -> list[Tensor]:
    """The head's outputs in the order of its manifest entry (the order of its raw output, flattened)."""
    names = entry["outputs"]
    if len(names) != count:
        raise ValueError(
            f"head {entry['name']!r} ({entry['kind']}): {count} outputs expected, manifest lists {names}"
        )
    return [_t(outputs[n]) for n in names]


def _fcos(entry: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]) -> list[Any]:
    n = len(entry["strides"])  # cls_0..cls_{n-1}, bbox_0.., ctr_0..
    flat = _head_outputs(entry, outputs, 3 * n)
    dets = decode_fcos(flat[:n], flat[n : 2 * n], flat[2 * n :], metas, **entry)
    return [{k: _np(v) for k, v in det.items()} for det in dets]


def _seg(entry: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]) -> list[Any]:
    (logits,) = _head_outputs(entry, outputs, 1)
    return [_np(x.argmax(0)) for x in decode_seg(logits, metas)]


def _depth(entry: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]) -> list[Any]:
    (depth,) = _head_outputs(entry, outputs, 1)
    return [_np(x[0]) for x in decode_depth(depth, metas, **entry)]


# manifest kind -> (decoder to per-image numpy results, writer of one result into a data sample)
DECODERS: dict[str, tuple[Callable, Callable[[Any, Any], None]]] = {}


def _write_instances(sample: Any, res: dict[str, np.ndarray]) -> None:
    from mmengine.structures import InstanceData

    sample.pred_instances = InstanceData(**{k: torch.from_numpy(v) for k, v in res.items()})


def _write_pixels(field: str) -> Callable[[Any, np.ndarray], None]:
    def write(sample: Any, res: np.ndarray) -> None:
        from mmengine.structures import PixelData

        setattr(sample, field, PixelData(data=torch.from_numpy(res)[None]))

    return write


DECODERS.update(
    fcos=(_fcos, _write_instances),
    seg=(_seg, _write_pixels("pred_sem_seg")),
    depth=(_depth, _write_pixels("pred_depth_map")),
)


def decode_head(entry: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]) -> list[Any]:
    """One head's per-image results (numpy) from the flat named outputs (numpy arrays or tensors)."""
    kind = entry.get("kind")
    if kind not in DECODERS:
        raise NotImplementedError(
            f"no runtime decoder for head {entry['name']!r} of type {entry.get('type')}"
        )
    return DECODERS[kind][0](entry, outputs, metas)


def decode(
    manifest: dict[str, Any], outputs: dict[str, Any], metas: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Decode every head of the manifest: per image ``{head name: result}``."""
    per_head = {e["name"]: decode_head(e, outputs, metas) for e in manifest["heads"] if e.get("kind")}
    return [{name: res[i] for name, res in per_head.items()} for i in range(len(metas))]


def fill_data_samples(manifest: dict[str, Any], outputs: dict[str, Any], data_samples: list) -> list[str]:
    """Write decoded predictions into data samples like the heads' ``predict`` does (``pred_instances``,
    ``pred_sem_seg``, ``pred_depth_map``), so the config's evaluator can score an exported model. Returns
    the heads it could not decode (their tasks get no prediction)."""
    metas = [s.metainfo for s in data_samples]
    skipped = []
    for entry in manifest["heads"]:
        if entry.get("kind") not in DECODERS:
            skipped.append(entry["name"])
            continue
        write = DECODERS[entry["kind"]][1]
        for sample, res in zip(data_samples, decode_head(entry, outputs, metas)):
            write(sample, res)
    return skipped
