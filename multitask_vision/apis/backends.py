"""What runs the network for the inferencer: a PyTorch model (a trained checkpoint), or an ONNX file written by
``deploy.py`` in ONNX Runtime. Both take the normalised batch of the model's data preprocessor and give each
chosen head's predictions in its own fresh data samples (only the sample's metainfo, plus what the head wrote),
decoded the way the model's ``predict`` does: the PyTorch heads through their adapters' ``predict_from_outputs``,
an exported file through the runtime helper (:mod:`multitask_vision.compression.postprocess`) for the heads it
knows and the heads' own decoding for the others (as ``deploy.py`` scores exported files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from multitask_vision.compression.export import ExportWrapper, ort_runner, ort_session, sub_model
from multitask_vision.compression.postprocess import build_manifest
from multitask_vision.compression.report import fill_exported_predictions
from multitask_vision.utils.errors import UserError

# manifest keys of a head that describe the exported graph (the rest are decoding settings the config may change)
STRUCTURAL_KEYS = ("task", "type", "kind", "outputs", "strides", "num_classes")


class ModelMismatchError(UserError):
    """An exported file that does not fit the config it is run with (other heads, outputs or input size)."""


def chosen_heads(requested: Sequence[str] | None, available: Sequence[str], where: str) -> list[str]:
    """``requested`` checked against ``available`` (default: all of them), in the order given."""
    if requested is None:
        return list(available)
    if isinstance(requested, str) or not requested:
        raise ValueError(f"heads must be a non-empty list of head names, got {requested!r}")
    unknown = [h for h in requested if h not in available]
    if unknown:
        raise ValueError(
            f"unknown head(s) {', '.join(map(repr, unknown))}: {where} has {', '.join(available)}"
        )
    return list(dict.fromkeys(requested))


def fresh_samples(samples: Sequence[Any]) -> list[Any]:
    """Samples with only the metainfo of ``samples``: one head writes its predictions into them."""
    return [type(s)(metainfo=s.metainfo) for s in samples]


class TorchBackend:
    """A ``MultiTaskModel``: runs only the trunk the chosen heads need (``tensor(heads=...)``)."""

    fixed_input_hw: tuple[int, int] | None = None

    def check_pipeline(self, transforms: Sequence[Any]) -> None:
        """Any image size runs."""

    def __init__(self, model: Any, heads: Sequence[str] | None, device: str) -> None:
        self.model = model
        self.heads = chosen_heads(heads, [h.name for h in model.graph.heads], "the config")
        self.device = torch.device(device)
        self.description = f"PyTorch on {self.device}"

    def fit(self, inputs: Tensor, samples: list) -> Tensor:
        return inputs

    @torch.no_grad()
    def run(self, inputs: Tensor) -> dict[str, Any]:
        out = self.model.tensor(inputs, heads=self.heads)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out

    @torch.no_grad()
    def decode(self, outputs: dict[str, Any], samples: list) -> dict[str, list]:
        per_head = {}
        for name in self.heads:
            per_head[name] = fresh_samples(samples)
            self.model.adapters[name].predict_from_outputs(
                self.model.blocks[name], outputs[name], per_head[name]
            )
        return per_head


class OnnxBackend:
    """An exported file in ONNX Runtime, checked against the config's model before anything runs.

    The file must export heads of the config (by name), each with the outputs the config's head declares
    (names and shapes: same classes, levels and strides); its manifest (``<file>.json`` beside it, written by
    ``deploy.py``), when present, must carry the config's pre-processing and head kinds. Any mismatch is a
    :class:`ModelMismatchError` of one line. Decoding settings (score threshold, NMS) are the config's.
    A file exported with a fixed image size (``fixed_input_hw``) gets every batch padded to that size.
    """

    def __init__(
        self,
        path: str | Path,
        model: Any,
        heads: Sequence[str] | None,
        *,
        config_name: str = "the config",
        device: str = "cpu",
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        self.model = model
        self._mismatch = f"{self.path} does not match {config_name}:"
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    f"device {device}: this ONNX Runtime has no CUDA provider ({ort.get_available_providers()}); "
                    "run the ONNX file on cpu or install onnxruntime-gpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort_session(self.path, threads, providers)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for unreadable files
            raise ValueError(f"cannot load ONNX file {self.path}: {str(e).splitlines()[0]}") from None
        self.fixed_input_hw = self._check_input(session)
        file_outputs = [o.name for o in session.get_outputs()]
        file_heads = list(dict.fromkeys(n.split(".", 1)[0] for n in file_outputs))
        config_heads = [h.name for h in model.graph.heads]
        extra = [h for h in file_heads if h not in config_heads]
        if extra:
            raise ModelMismatchError(
                f"{self._mismatch} it outputs {', '.join(map(repr, extra))}, which the config has no head "
                f"named (config heads: {', '.join(config_heads)}; file outputs: {', '.join(file_outputs)})"
            )
        self.heads = chosen_heads(heads, file_heads, str(self.path))
        h, w = self.fixed_input_hw or (64, 64)
        self.wrapper = ExportWrapper(model, torch.zeros(1, 3, h, w), heads=file_heads)
        self._check_outputs(session, file_heads)
        self.manifest = build_manifest(model, self.wrapper.output_names)
        self._check_manifest()
        self.entries = {e["name"]: e for e in self.manifest["heads"]}
        names = [n for n in self.wrapper.output_names if n.split(".", 1)[0] in self.heads]
        if len(self.heads) < len(file_heads):  # ONNX Runtime runs a whole graph: keep what these heads need
            session = ort_session(sub_model(self.path, names), threads, providers)
        self.session = session
        self.runner = ort_runner(self.path, threads, names, session=session)
        self.description = f"ONNX Runtime ({session.get_providers()[0]})"

    def _check_input(self, session: Any) -> tuple[int, int] | None:
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = [(i.name, i.shape) for i in inputs]
            raise ModelMismatchError(f"{self._mismatch} it takes {shapes}, not one (B, 3, H, W) image batch")
        h, w = inputs[0].shape[2:]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def _check_outputs(self, session: Any, file_heads: list[str]) -> None:
        declared = {o.name: o.shape for o in session.get_outputs()}
        with torch.no_grad():
            expected = dict(zip(self.wrapper.output_names, self.wrapper(self.wrapper_example())))
        for head in file_heads:
            ours = [n for n in expected if n.split(".", 1)[0] == head]
            theirs = [n for n in declared if n.split(".", 1)[0] == head]
            if ours != theirs:
                raise ModelMismatchError(
                    f"{self._mismatch} head {head!r} outputs {', '.join(theirs)} in the file but "
                    f"{', '.join(ours)} in the config"
                )
            for name in ours:
                want = tuple(expected[name].shape[1:])
                got = tuple(declared[name][1:])
                if any(isinstance(g, int) and g != e for g, e in zip(got, want)) or len(got) != len(want):
                    raise ModelMismatchError(
                        f"{self._mismatch} output {name} is {got} per image in the file but {want} for the "
                        f"config at the same input size (other classes, levels or strides?)"
                    )

    def wrapper_example(self) -> Tensor:
        h, w = self.fixed_input_hw or (64, 64)
        return torch.zeros(1, 3, h, w)

    def _check_manifest(self) -> None:
        path = self.path.with_suffix(".json")
        if not path.is_file():
            return
        try:
            theirs = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the manifest {path}: {e}") from None
        ours = self.manifest
        for key, value in ours["preprocess"].items():
            got = theirs.get("preprocess", {}).get(key)
            if got != value:
                raise ModelMismatchError(
                    f"{self._mismatch} its manifest {path.name} has preprocess.{key}={got!r}, the config's "
                    f"data_preprocessor {value!r}"
                )
        entries = {e.get("name"): e for e in theirs.get("heads", [])}
        for entry in ours["heads"]:
            other = entries.get(entry["name"], {})
            for key in STRUCTURAL_KEYS:
                if key in entry and other.get(key) != entry[key]:
                    raise ModelMismatchError(
                        f"{self._mismatch} its manifest {path.name} has {entry['name']}.{key}={other.get(key)!r}, "
                        f"the config {entry[key]!r}"
                    )

    def check_pipeline(self, transforms: Sequence[Any]) -> None:
        """A test pipeline that resizes every image to a fixed size (``keep_ratio=False``) larger than the
        file's fixed input is refused before anything runs."""
        if self.fixed_input_hw is None:
            return
        fh, fw = self.fixed_input_hw
        div = int(self.model.data_preprocessor.pad_size_divisor)
        for t in transforms:
            scale = getattr(t, "scale", None)
            if getattr(t, "keep_ratio", True) or not isinstance(scale, (tuple, list)) or len(scale) != 2:
                continue
            h, w = int(scale[1]), int(scale[0])
            ph, pw = -(-h // div) * div, -(-w // div) * div
            if ph > fh or pw > fw:
                raise ModelMismatchError(
                    f"{self._mismatch} it takes {fh}x{fw} images but the config's test pipeline resizes them to "
                    f"{h}x{w} ({type(t).__name__} scale={tuple(scale)}, padded {ph}x{pw})"
                )

    def fit(self, inputs: Tensor, samples: list) -> Tensor:
        """Pad the batch to the file's fixed input size (bottom/right, the preprocessor's pad value), as the data
        preprocessor pads; a larger batch is an error naming the image."""
        if self.fixed_input_hw is None:
            return inputs
        (fh, fw), (h, w) = self.fixed_input_hw, inputs.shape[-2:]
        if (h, w) == (fh, fw):
            return inputs
        if h > fh or w > fw:
            big = next(
                (
                    s.metainfo
                    for s in samples
                    if s.metainfo["img_shape"][0] > fh or s.metainfo["img_shape"][1] > fw
                ),
                samples[0].metainfo,
            )
            name = big.get("img_path") or "an input array"
            raise ModelMismatchError(
                f"{self._mismatch} it takes images of at most {fh}x{fw} but the config's test pipeline gives "
                f"{name} as {big['img_shape'][0]}x{big['img_shape'][1]} (padded {h}x{w})"
            )
        pad_value = float(self.model.data_preprocessor.pad_value)
        for s in samples:
            s.set_metainfo(dict(batch_input_shape=(fh, fw), pad_shape=(fh, fw)))
        return F.pad(inputs, (0, fw - w, 0, fh - h), value=pad_value)

    def run(self, inputs: Tensor) -> dict[str, Tensor]:
        return self.runner(inputs)

    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor], samples: list) -> dict[str, list]:
        per_head = {}
        for name in self.heads:
            per_head[name] = fresh_samples(samples)
            manifest = dict(self.manifest, heads=[self.entries[name]])
            fill_exported_predictions(self.model, manifest, self.wrapper, outputs, per_head[name])
        return per_head
