"""The deploy pipeline: original -> prune -> fine-tune -> quantize -> export + parity -> report.

``deploy.py`` parses its arguments and calls :func:`prepare` (every check of the user's input, before any heavy
work) and :func:`run_pipeline` (the stages, one function each, in order). Each stage adds rows to the report
(a model or a file: size, parameters, MACs, metrics; latencies are queued and timed side by side at the end),
``steps`` (what it did, how long it took) and ``notes``::

    run = prepare("configs/quickstart.py", "iter_1300.pth", "configs/deploy.py", "deploy_out/quickstart")
    report = run_pipeline(run)  # also writes report.json / report.md into run.out

The steps themselves are registered objects chosen by the deploy config (:mod:`.config`): ``run.dc.pruning``,
``run.dc.quantization``, ``run.dc.export``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from multitask_vision.compression.config import DeployConfig, load_deploy_config
from multitask_vision.compression.export import (
    ExportWrapper,
    export_onnx,
    export_program,
    max_abs_diff,
    ort_runner,
    torch_runner,
)
from multitask_vision.compression.finetune import calibration_batches, finetune
from multitask_vision.compression.postprocess import build_manifest
from multitask_vision.compression.pruning import count_params, load_pruned, save_pruned
from multitask_vision.compression.qat_hook import QATHook
from multitask_vision.compression.report import (
    build_evaluator,
    count_macs,
    cpu_info,
    eval_dataset,
    eval_loader,
    evaluate,
    file_size_mb,
    latency_interleaved,
    onnx_elements,
    progress_iter,
    stored_elements,
    write_report,
)
from multitask_vision.evaluation.evaluator import primary_metrics
from multitask_vision.models.builder import as_config, build_model
from multitask_vision.utils.checkpoint import resolve_checkpoint
from multitask_vision.utils.errors import writable_dir

FORMAT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}


@dataclass
class DeployRun:
    """One deployment: its inputs, the model as it goes through the stages, and what the report collects."""

    cfg: Any  # the training config
    dc: DeployConfig
    model: Any
    out: Path
    sources: dict[str, str]  # config, checkpoint, deploy_config: as given, for the report
    threads: int = 1
    stages: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # set by start(): the evaluation data, a validation batch, the export example and the timed input
    dataset: Any = field(init=False)
    eval_samples: int = field(init=False)
    eval_batch: Tensor = field(init=False)  # (B, 3, H, W) normalised
    example: Tensor = field(init=False)  # (2, 3, H, W)
    bench_img: Tensor = field(init=False)  # (1, 3, h, w)
    progress: Any = field(init=False)
    timers: list[tuple[dict, str, Any]] = field(default_factory=list)  # (row, column, fn)
    calib: list[Tensor] = field(default_factory=list)
    parity_ok: bool = True

    # ------------------------------------------------------------------------------------ report rows
    def metrics(self, model: Any, label: str, **kw: Any) -> dict | None:
        """Per-task metrics (:func:`~multitask_vision.compression.report.evaluate`), or None with a note."""
        n = self.dc.evaluation.max_samples
        try:
            return evaluate(
                self.cfg, self.dataset, model, n, progress=self.progress, desc=f"evaluate {label}", **kw
            )
        except NotImplementedError as e:
            self.notes.append(f"{label}: no metrics ({e})")
            return None

    def torch_row(self, stage: str, model: Any, file: Path | None, params: int) -> dict:
        """A PyTorch model: size, params, MACs, metrics now; torch latency (of a frozen copy) later."""
        frozen = ExportWrapper(copy.deepcopy(model).eval(), self.example)
        img = self.bench_img
        row: dict[str, Any] = dict(stage=stage, file=str(file) if file else None, size_mb=file_size_mb(file))
        row.update(params=params, macs=count_macs(frozen, img), torch_ms=None, ort_ms=None)
        row["metrics"] = self.metrics(model, stage)
        self.timers.append((row, "torch_ms", lambda: frozen(img)))
        self.stages.append(row)
        return row

    def time_later(self, row: dict, column: str, fn: Any) -> None:
        img = self.bench_img
        self.timers.append((row, column, lambda: fn(img)))


def prepare(
    config: str | Path | Any,
    checkpoint: str | Path,
    deploy_config: str | Path,
    out: str | Path,
    *,
    cfg_options: dict | None = None,
    deploy_options: dict | None = None,
) -> DeployRun:
    """Everything that can fail because of the user's input, before any heavy work: the training config (a
    path or a ``Config``), the deploy config, the checkpoint (Runner checkpoint, state dict or pruned model, or
    a work dir: its last checkpoint; loaded strictly by :func:`~multitask_vision.models.builder.build_model`) and the checks of the deploy config
    against the built model, and that the output folder can be written. Raises ``ValueError`` /
    ``FileNotFoundError`` with one line."""
    cfg = as_config(config, cfg_options)
    dc = load_deploy_config(deploy_config, deploy_options)
    checkpoint = resolve_checkpoint(checkpoint)  # a work dir: its last checkpoint (the report names the file)
    model = build_model(cfg, checkpoint)
    dc.check_model(model)
    threads = dc.benchmark.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    given = config if isinstance(config, (str, Path)) else cfg.filename
    sources = dict(config=str(given), checkpoint=str(checkpoint), deploy_config=str(deploy_config))
    out = writable_dir(out, "deploy output folder")
    return DeployRun(cfg=cfg, dc=dc, model=model, out=out, sources=sources, threads=threads)


def run_pipeline(run: DeployRun) -> dict:
    """Every stage in order, then the report (``report.json`` and ``report.md`` in ``run.out``)."""
    start(run)
    original(run)
    prune(run)
    finetune_pruned(run)
    qmodel = quantize(run)
    export(run, qmodel)
    return report(run)


# ------------------------------------------------------------------------------------------ stages
def start(run: DeployRun) -> None:
    """The output folder, the evaluation set, a normalised validation batch (parity), the export example (2
    images: a dynamic batch needs more than one) and the timed input (batch 1 of ``benchmark.input_size``)."""
    run.out.mkdir(parents=True, exist_ok=True)
    run.progress = progress_iter()
    run.dataset = eval_dataset(run.cfg)
    loader = eval_loader(run.cfg, run.dataset, run.dc.evaluation.max_samples)
    run.eval_samples = len(loader.dataset)  # type: ignore[arg-type]
    with torch.no_grad():
        run.eval_batch = run.model.data_preprocessor(next(iter(loader)), False)["inputs"]  # (B, 3, H, W)
    batch = run.eval_batch
    run.example = batch[:2] if batch.shape[0] >= 2 else torch.cat([batch, batch])
    h, w = run.dc.benchmark.input_size or tuple(batch.shape[-2:])
    run.bench_img = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def original(run: DeployRun) -> None:
    """The model as trained (``original.pth``), and its fp32 ONNX file for the ORT latency of the original."""
    path = run.out / "original.pth"
    torch.save(run.model.state_dict(), path)
    row = run.torch_row("original", run.model, path, count_params(run.model))
    step = run.dc.export
    if step is not None and step.format == "onnx":
        onnx = export_onnx(
            ExportWrapper(run.model, run.example),
            run.example,
            run.out / "original_fp32.onnx",
            opset=step.opset,
            dynamic_batch=True,
        )
        row["ort_file"] = str(onnx)
        run.time_later(row, "ort_ms", ort_runner(onnx, run.threads))


def prune(run: DeployRun) -> None:
    """``pruning``: prune in place, save ``pruned.pth`` and check that it reloads to the same outputs."""
    step = run.dc.pruning
    if step is None:
        return
    model, example = run.model, run.example
    t0 = time.perf_counter()
    info = step.apply(model, example)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    path = save_pruned(model, run.out / "pruned.pth", run.cfg.model, meta=dict(step=info))
    ref = ExportWrapper(model, example)
    reloaded = torch_runner(ExportWrapper(load_pruned(path), example), ref.output_names)
    diff = max_abs_diff(torch_runner(ref, ref.output_names)(example), reloaded(example))
    info["reload_max_abs_diff"] = max(diff.values())
    run.steps.append(dict(step="pruning", **info))
    run.torch_row(f"pruned ({step.method} {step.amount:g})", model, path, count_params(model))


def finetune_pruned(run: DeployRun) -> None:
    """``finetune`` (without QAT): train the pruned model back, save ``pruned_finetuned.pth``."""
    ft, q = run.dc.finetune, run.dc.quantization
    if ft is None or (q is not None and q.method == "qat"):
        return
    t0 = time.perf_counter()
    finetune(run.cfg, ft, run.model, run.out / "finetune")
    path = save_pruned(
        run.model, run.out / "pruned_finetuned.pth", run.cfg.model, meta=dict(finetune_iters=ft.iters)
    )
    run.steps.append(dict(step="finetune", iters=ft.iters, seconds=round(time.perf_counter() - t0, 1)))
    run.torch_row(f"pruned + fine-tuned {ft.iters} it", run.model, path, count_params(run.model))


def quantize(run: DeployRun) -> Any:
    """The PyTorch side of ``quantization``: static PT2E (calibrated on ``calib_samples`` training images of every
    source, also kept for ONNX Runtime) or QAT (a fine-tune with :class:`QATHook`) of a copy of the model, saved
    as ``quantized_*int8.pt2``. Returns the int8 model, or None."""
    q, out = run.dc.quantization, run.out
    qat = q is not None and q.method == "qat"
    qmodel = None
    if q is not None and q.method == "static":
        t0 = time.perf_counter()
        run.calib, counts = calibration_batches(run.cfg, run.model, q.calib_samples)
        run.steps.append(dict(step="calibration data", images_per_source=counts, batches=len(run.calib)))
        if q.torch_side:
            qmodel = copy.deepcopy(run.model)
            info = q.quantize_torch(
                qmodel, run.calib, progress=lambda it: run.progress(it, "calibrate (PT2E)")
            )
            seconds = round(time.perf_counter() - t0, 1)
            step = dict(step="quantization", method="static PT2E x86", observer=q.observer, seconds=seconds)
            run.steps.append(dict(step, **info))
    elif qat:
        t0 = time.perf_counter()
        qmodel = copy.deepcopy(run.model)
        hook = QATHook(start_iter=0, save_name=None)
        finetune(run.cfg, run.dc.finetune, qmodel, out / "finetune_qat", extra_hooks=[hook])
        iters, seconds = run.dc.finetune.iters, round(time.perf_counter() - t0, 1)  # type: ignore[union-attr]
        step = dict(step="quantization", method="QAT PT2E x86", iters=iters, units=len(hook.prepared))
        run.steps.append(dict(step, seconds=seconds))
        run.notes.append(
            "QAT fine-tuned the quantized copy only; the fp32 export is of the model before QAT "
            "(converting to int8 folds the float weights away)."
        )
    if qmodel is None:
        return None
    path = out / ("quantized_qat_int8.pt2" if qat else "quantized_int8.pt2")
    qfile = export_program(ExportWrapper(qmodel, run.example), run.example, path)
    label = f"quantized ({'QAT' if qat else 'static'} int8, PT2E)"
    run.torch_row(label, qmodel, qfile, stored_elements(qmodel))
    run.notes.append(
        "The PT2E int8 model runs in eager PyTorch through reference (dequantize -> fp32) kernels, so its "
        "torch latency is not its deployed speed; its int8 speed is that of its ONNX export in ONNX Runtime."
    )
    return qmodel


@dataclass
class Exported:
    """The fp32 export every exported row is measured against."""

    wrapper: ExportWrapper
    path: Path  # the fp32 file
    manifest: dict
    reference: dict[str, Tensor]  # the PyTorch model's outputs on the validation batch
    macs: int
    decodable: bool  # the task heads were exported (not blocks): their files get metrics


def export(run: DeployRun, qmodel: Any) -> None:
    """``export``: the fp32 file (with its parity against PyTorch on a validation batch, and the manifest of the
    runtime helper), then the int8 ONNX files: ONNX Runtime's quantization of it, and the PT2E model's export."""
    if run.dc.export is None:
        return
    exp = export_fp32(run)
    q = run.dc.quantization
    if q is not None and q.method in ("static", "dynamic") and q.onnx_side:
        t0 = time.perf_counter()
        int8 = q.quantize_onnx(exp.path, run.out / "model_int8.onnx", run.calib)
        seconds = round(time.perf_counter() - t0, 1)
        run.steps.append(dict(step="quantization", method=f"{q.method} ONNX Runtime QDQ", seconds=seconds))
        (run.out / "model_int8.json").write_text(json.dumps(exp.manifest, indent=2))
        run_int8 = ort_runner(int8, run.threads)
        diff = max_abs_diff(exp.reference, run_int8(run.eval_batch))
        parity = dict(reference="PyTorch fp32", max_abs_diff=diff, tolerance=None, ok=None)
        exported_row(
            run, exp, f"exported int8 ONNX (ORT {q.method})", int8, run_int8, parity, onnx_elements(int8)
        )
    if qmodel is not None and run.dc.export.format == "onnx":
        qwrap = run.dc.export.wrap(qmodel, run.example)
        path = run.dc.export.export(qwrap, run.example, run.out / "model_int8_pt2e.onnx")
        (run.out / "model_int8_pt2e.json").write_text(json.dumps(exp.manifest, indent=2))
        run_q = ort_runner(path, run.threads)
        dq = max_abs_diff(torch_runner(qwrap, qwrap.output_names)(run.eval_batch), run_q(run.eval_batch))
        parity = dict(reference="PT2E int8 PyTorch", max_abs_diff=dq, tolerance=None, ok=None)
        exported_row(run, exp, "exported int8 ONNX (PT2E)", path, run_q, parity, onnx_elements(path))
    if run.dc.export.format == "onnx":
        run.notes.append(
            "MACs of an exported file are those of the PyTorch model it came from (FlopCounterMode); the int8 "
            "files do the same multiply-accumulates in int8."
        )


def export_fp32(run: DeployRun) -> Exported:
    """``model_fp32.<format>`` and its manifest ``model_fp32.json``; parity with PyTorch decides the exit code."""
    step, model, out = run.dc.export, run.model, run.out
    onnx = step.format == "onnx"
    wrapper = step.wrap(model, run.example)
    fp32 = step.export(wrapper, run.example, out / f"model_fp32{step.suffix}")
    manifest = build_manifest(model, wrapper.output_names)
    (out / "model_fp32.json").write_text(json.dumps(manifest, indent=2))
    run_fp32 = step.runner(fp32, wrapper, run.threads)
    reference = torch_runner(wrapper, wrapper.output_names)(run.eval_batch)
    diff = max_abs_diff(reference, run_fp32(run.eval_batch))
    tol = run.dc.evaluation.parity_atol
    run.parity_ok = all(v <= tol for v in diff.values())
    exported_heads = {e["name"] for e in manifest["heads"]}
    exp = Exported(
        wrapper, fp32, manifest, reference, count_macs(wrapper, run.bench_img), step.blocks is None
    )
    own_decoding = sorted(e["name"] for e in manifest["heads"] if not e["kind"])
    if step.blocks is not None:
        run.notes.append(
            f"export of blocks {step.blocks}: no task outputs, so no metrics for the exported files"
        )
    elif own_decoding:
        run.notes.append(
            f"heads {own_decoding} of the exported files are scored by decoding their ONNX Runtime outputs "
            "with the heads' own predict_by_feat (the runtime helper postprocess.py does not know them; "
            "decode them the same way at deployment)"
        )
    if exp.decodable and exported_heads != {hd.name for hd in model.graph.heads}:
        run.notes.append(
            f"only heads {sorted(exported_heads)} exported: the other tasks have no metrics there"
        )
    qat = run.dc.quantization is not None and run.dc.quantization.method == "qat"
    stage = f"exported fp32 {FORMAT_LABELS[step.format]}"
    stage += " (pruned, before QAT)" if qat and run.dc.pruning is not None else ""
    batch = int(run.eval_batch.shape[0])
    parity = dict(reference="PyTorch fp32", max_abs_diff=diff, tolerance=tol, ok=run.parity_ok, batch=batch)
    params = onnx_elements(fp32) if onnx else count_params(model)
    exported_row(run, exp, stage, fp32, run_fp32, parity, params)
    return exp


def exported_row(
    run: DeployRun, exp: Exported, stage: str, path: Path, fn: Any, parity: dict, params: int
) -> dict:
    """An exported file: size, params (its stored elements), MACs, parity, metrics through the runtime helper
    (or the heads' own decoding); its latency (ONNX Runtime, or torch for TorchScript) later."""
    row: dict[str, Any] = dict(stage=stage, file=str(path), size_mb=file_size_mb(path), params=params)
    row.update(macs=exp.macs, torch_ms=None, ort_ms=None, parity=parity)
    if exp.decodable:
        row["metrics"] = run.metrics(
            run.model, stage, outputs_fn=fn, manifest=exp.manifest, wrapper=exp.wrapper
        )
    run.time_later(row, "ort_ms" if run.dc.export.format == "onnx" else "torch_ms", fn)
    run.stages.append(row)
    return row


def report(run: DeployRun) -> dict:
    """Every queued latency, timed side by side; then ``report.json`` and ``report.md``."""
    torch.set_num_threads(run.threads)
    b = run.dc.benchmark
    print(
        f"latency: {len(run.timers)} models side by side, {b.warmup} warm-up + {b.runs} timed calls each",
        flush=True,
    )
    for (row, column, _), ms in zip(
        run.timers, latency_interleaved([t[2] for t in run.timers], b.runs, b.warmup)
    ):
        row[column] = ms
    primary = primary_metrics(build_evaluator(run.cfg, run.dataset))
    if not primary:
        run.notes.append(
            "no primary metric per task (the evaluator has no Δm baselines and no TaskMetric sets primary=): "
            "the table shows none; all metrics are listed below"
        )
    h, w = run.bench_img.shape[-2:]
    env = dict(cpu_info(), threads=run.threads, runs=b.runs, warmup=b.warmup, input_size=[h, w])
    result = dict(
        **run.sources,
        deploy=run.dc.raw,
        environment=env,
        eval_samples=run.eval_samples,
        primary_metrics=[dict(key=k, lower_is_better=lower) for k, lower in primary],
        stages=run.stages,
        steps=run.steps,
        notes=run.notes,
        parity_ok=run.parity_ok,
    )
    json_path, md_path = write_report(run.out, result)
    print(f"report: {md_path} and {json_path}")
    return result
