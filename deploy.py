"""Deploy a trained multi-task model: prune -> fine-tune -> quantize -> export -> verify -> report.

uv run deploy.py --config configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1000.pth \
                 --deploy-config configs/deploy.py --output deploy_out/quickstart
uv run deploy.py ... --deploy-options pruning.amount=0.5 evaluation.max_samples=100

Writes into --output: the artefacts of each stage (original.pth, pruned.pth, quantized_*.pt2, model_fp32.onnx,
model_int8.onnx, a manifest .json per exported file for the runtime helper), report.json and report.md.
Exit code 2 on a bad config or input (one line), 1 when the fp32 export misses parity.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multitask_vision.engine.launch import DictAction, load_config, user_errors

# torchao registers an Enum with torch's pytree at import and torch warns about it: not ours to fix
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config of the model (.py)")
    p.add_argument(
        "--checkpoint", required=True, help="trained checkpoint (Runner .pth) or a pruned model file"
    )
    p.add_argument("--deploy-config", required=True, help="deploy config (.py), e.g. configs/deploy.py")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override training-config keys")
    p.add_argument("--deploy-options", nargs="+", action=DictAction, help="override deploy-config keys")
    return p.parse_args(argv)


@dataclass
class Context:
    cfg: Any
    dc: Any
    model: Any
    out: Path
    args: argparse.Namespace
    threads: int = 1
    stages: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def setup(args: argparse.Namespace) -> Context:
    """Everything that can fail because of the user's input, before any heavy work."""
    import torch

    import multitask_vision
    from multitask_vision.compression import config as deploy_config
    from multitask_vision.models.builder import build_model

    cfg = load_config(args.config, args.cfg_options)
    dc = deploy_config.load_deploy_config(args.deploy_config, args.deploy_options)
    multitask_vision.register_all_modules()
    model = build_model(cfg, args.checkpoint)
    dc.check_model(model)
    threads = dc.benchmark.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    return Context(cfg=cfg, dc=dc, model=model, out=Path(args.output), args=args, threads=threads)


# ------------------------------------------------------------------------------------------ pipeline
def calibration_batches(ctx: Context, n_samples: int) -> tuple[list, dict[str, int]]:
    """Normalised batches from every training source (each batch from one source, as in training), evenly
    spread over each source; returns the batches and the images per source."""
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate

    from multitask_vision.registry import DATASETS

    dataset = DATASETS.build(copy.deepcopy(ctx.cfg.train_dataloader.dataset))
    sizes = list(getattr(dataset, "source_sizes", [len(dataset)]))
    names = [
        getattr(ds, "source_name", f"source{i}")
        for i, ds in enumerate(getattr(dataset, "datasets", [dataset]))
    ]
    bs = int(ctx.cfg.train_dataloader.get("batch_size", 8))
    per = max(2, n_samples // len(sizes))
    batches, counts = [], {}
    offset = 0
    for name, size in zip(names, sizes):
        idx = (offset + np.linspace(0, size - 1, min(per, size)).round().astype(int)).tolist()
        counts[str(name)] = len(idx)
        for i in range(0, len(idx), bs):
            chunk = idx[i : i + bs]
            if len(chunk) < 2:  # PT2E preparation and ORT calibration want >= 2 images per batch
                chunk = idx[max(0, i - 1) : i + 1]
            data = pseudo_collate([dataset[j] for j in chunk])
            with torch.no_grad():
                batches.append(ctx.model.data_preprocessor(data, False)["inputs"])
        offset += size
    return batches, counts


def finetune(ctx: Context, model, work_dir: Path, extra_hooks: list | None = None) -> None:
    """``finetune.iters`` iterations of mmengine's IterBasedTrainLoop on the training config's dataloader and
    optimizer, lr cosine-decayed to 1%, with the already built (pruned) model object."""
    from mmengine.runner import Runner

    ft = ctx.dc.finetune
    cfg = ctx.cfg
    optim = copy.deepcopy(cfg.optim_wrapper)
    if ft.lr is not None:
        optim.optimizer.lr = ft.lr
    lr = float(optim.optimizer.lr)
    # the weights are trained: the Runner must neither re-initialise them nor re-apply init_from
    model._is_init = True
    model.init_from = []
    hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") != "QATHook"] + list(extra_hooks or [])
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"finetune_{time.strftime('%Y%m%d_%H%M%S')}_{id(model) % 10000}",
        train_dataloader=copy.deepcopy(cfg.train_dataloader),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=ft.iters, val_interval=ft.iters + 1),
        optim_wrapper=optim,
        param_scheduler=[
            dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=ft.iters, eta_min=lr * 0.01)
        ],
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=ft.log_interval),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=None,
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=hooks,
        default_scope=cfg.get("default_scope", "multitask_vision"),
        env_cfg=copy.deepcopy(cfg.get("env_cfg", dict(dist_cfg=dict(backend="gloo")))),
        randomness=copy.deepcopy(cfg.get("randomness", dict(seed=0))),
        log_processor=dict(by_epoch=False, window_size=ft.log_interval),
        launcher="none",
    )
    runner.train()
    del runner  # its persistent dataloader workers end with it, before anything is timed
    gc.collect()
    model.eval()


class Stages:
    """Rows of the report: measures what it can at once, queues latencies to time side by side at the end."""

    def __init__(self, ctx: Context, dataset, bench_img, progress) -> None:
        self.ctx = ctx
        self.dataset = dataset
        self.bench_img = bench_img
        self.progress = progress
        self.timers: list[tuple[dict, str, Any]] = []  # (row, column, fn)

    def metrics(self, model, label: str, **kw) -> dict | None:
        from multitask_vision.compression.report import evaluate

        ev = self.ctx.dc.evaluation
        try:
            return evaluate(
                self.ctx.cfg,
                self.dataset,
                model,
                ev.max_samples,
                progress=self.progress,
                desc=f"evaluate {label}",
                **kw,
            )
        except NotImplementedError as e:
            self.ctx.notes.append(f"{label}: no metrics ({e})")
            return None

    def add(self, row: dict) -> dict:
        self.ctx.stages.append(row)
        return row

    def torch_row(self, stage: str, model, file: Path | None, params: int, example) -> dict:
        """A PyTorch model: size, params, MACs, metrics now; torch latency (of a frozen copy) later."""
        from multitask_vision.compression.export import ExportWrapper
        from multitask_vision.compression.report import count_macs, file_size_mb

        frozen = ExportWrapper(copy.deepcopy(model).eval(), example)
        img = self.bench_img
        row = dict(stage=stage, file=str(file) if file else None, size_mb=file_size_mb(file), params=params)
        row.update(macs=count_macs(frozen, img), torch_ms=None, ort_ms=None)
        row["metrics"] = self.metrics(model, stage)
        self.timers.append((row, "torch_ms", lambda: frozen(img)))
        return self.add(row)

    def time_later(self, row: dict, column: str, fn) -> None:
        img = self.bench_img
        self.timers.append((row, column, lambda: fn(img)))

    def measure_latencies(self) -> None:
        import torch

        from multitask_vision.compression.report import latency_interleaved

        torch.set_num_threads(self.ctx.threads)
        b = self.ctx.dc.benchmark
        print(
            f"latency: {len(self.timers)} models side by side, {b.warmup} warm-up + {b.runs} timed calls each",
            flush=True,
        )
        for (row, column, _), ms in zip(
            self.timers, latency_interleaved([t[2] for t in self.timers], b.runs, b.warmup)
        ):
            row[column] = ms


FORMAT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}


def run(ctx: Context) -> dict:
    import json

    import torch

    from multitask_vision.compression.export import (
        ExportWrapper,
        export_onnx,
        export_program,
        max_abs_diff,
        ort_runner,
        torch_runner,
    )
    from multitask_vision.compression.postprocess import build_manifest
    from multitask_vision.compression.pruning import count_params, load_pruned, save_pruned
    from multitask_vision.compression.report import (
        count_macs,
        cpu_info,
        eval_dataset,
        eval_loader,
        file_size_mb,
        onnx_elements,
        progress_iter,
        stored_elements,
        write_report,
    )

    dc, out, model = ctx.dc, ctx.out, ctx.model
    out.mkdir(parents=True, exist_ok=True)
    progress = progress_iter()
    dataset = eval_dataset(ctx.cfg)
    loader = eval_loader(ctx.cfg, dataset, dc.evaluation.max_samples)
    with torch.no_grad():
        eval_batch = model.data_preprocessor(next(iter(loader)), False)["inputs"]  # (B, 3, H, W) normalised
    example = eval_batch[:2] if eval_batch.shape[0] >= 2 else torch.cat([eval_batch, eval_batch])
    h, w = dc.benchmark.input_size or tuple(eval_batch.shape[-2:])
    bench_img = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    st = Stages(ctx, dataset, bench_img, progress)
    onnx_export = dc.export is not None and dc.export.format == "onnx"

    # ---- original
    orig_file = out / "original.pth"
    torch.save(model.state_dict(), orig_file)
    row = st.torch_row("original", model, orig_file, count_params(model), example)
    if onnx_export:
        path = export_onnx(
            ExportWrapper(model, example),
            example,
            out / "original_fp32.onnx",
            opset=dc.export.opset,
            dynamic_batch=True,
        )
        row["ort_file"] = str(path)
        st.time_later(row, "ort_ms", ort_runner(path, ctx.threads))

    # ---- pruning (+ fine-tuning)
    if dc.pruning is not None:
        t0 = time.perf_counter()
        info = dc.pruning.apply(model, example)
        info["seconds"] = round(time.perf_counter() - t0, 1)
        path = save_pruned(model, out / "pruned.pth", ctx.cfg.model, meta=dict(step=info))
        reloaded = load_pruned(path)
        ref = ExportWrapper(model, example)
        names = ref.output_names
        diff = max_abs_diff(
            torch_runner(ref, names)(example), torch_runner(ExportWrapper(reloaded, example), names)(example)
        )
        info["reload_max_abs_diff"] = max(diff.values())
        ctx.steps.append(dict(step="pruning", **info))
        st.torch_row(
            f"pruned ({dc.pruning.method} {dc.pruning.amount:g})", model, path, count_params(model), example
        )
    qat = dc.quantization is not None and dc.quantization.method == "qat"
    if dc.finetune is not None and not qat:
        t0 = time.perf_counter()
        finetune(ctx, model, out / "finetune")
        path = save_pruned(
            model, out / "pruned_finetuned.pth", ctx.cfg.model, meta=dict(finetune_iters=dc.finetune.iters)
        )
        ctx.steps.append(
            dict(step="finetune", iters=dc.finetune.iters, seconds=round(time.perf_counter() - t0, 1))
        )
        st.torch_row(f"pruned + fine-tuned {dc.finetune.iters} it", model, path, count_params(model), example)

    # ---- quantization, PyTorch side (PT2E)
    q = dc.quantization
    qmodel = None
    calib: list = []
    if q is not None and q.method == "static":
        t0 = time.perf_counter()
        calib, counts = calibration_batches(ctx, q.calib_samples)
        ctx.steps.append(dict(step="calibration data", images_per_source=counts, batches=len(calib)))
        if q.torch_side:
            qmodel = copy.deepcopy(model)
            info = q.quantize_torch(qmodel, calib, progress=lambda it: progress(it, "calibrate (PT2E)"))
            ctx.steps.append(
                dict(
                    step="quantization",
                    method="static PT2E x86",
                    observer=q.observer,
                    seconds=round(time.perf_counter() - t0, 1),
                    **info,
                )
            )
    elif qat:
        from multitask_vision.compression.qat_hook import QATHook

        t0 = time.perf_counter()
        qmodel = copy.deepcopy(model)
        hook = QATHook(start_iter=0, save_name=None)
        finetune(ctx, qmodel, out / "finetune_qat", extra_hooks=[hook])
        ctx.steps.append(
            dict(
                step="quantization",
                method="QAT PT2E x86",
                iters=dc.finetune.iters,
                units=len(hook.prepared),
                seconds=round(time.perf_counter() - t0, 1),
            )
        )
        ctx.notes.append(
            "QAT fine-tuned the quantized copy only; the fp32 export is of the model before QAT "
            "(converting to int8 folds the float weights away)."
        )
    if qmodel is not None:
        qfile = export_program(
            ExportWrapper(qmodel, example),
            example,
            out / ("quantized_qat_int8.pt2" if qat else "quantized_int8.pt2"),
        )
        st.torch_row(
            f"quantized ({'QAT' if qat else 'static'} int8, PT2E)",
            qmodel,
            qfile,
            stored_elements(qmodel),
            example,
        )
        ctx.notes.append(
            "The PT2E int8 model runs in eager PyTorch through reference (dequantize -> fp32) kernels, so its "
            "torch latency is not its deployed speed; its int8 speed is that of its ONNX export in ONNX Runtime."
        )

    # ---- export, parity, int8 ONNX
    parity_ok = True
    if dc.export is not None:
        label = FORMAT_LABELS[dc.export.format]
        wrapper = dc.export.wrap(model, example)
        fp32 = dc.export.export(wrapper, example, out / f"model_fp32{dc.export.suffix}")
        manifest = build_manifest(model, wrapper.output_names)
        (out / "model_fp32.json").write_text(json.dumps(manifest, indent=2))
        run_fp32 = dc.export.runner(fp32, wrapper, ctx.threads)
        ref_out = torch_runner(wrapper, wrapper.output_names)(eval_batch)
        diff = max_abs_diff(ref_out, run_fp32(eval_batch))
        tol = dc.evaluation.parity_atol
        parity_ok = all(v <= tol for v in diff.values())
        macs = count_macs(wrapper, bench_img)
        exported_heads = {e["name"] for e in manifest["heads"]}
        decodable = dc.export.blocks is None
        own_decoding = sorted(e["name"] for e in manifest["heads"] if not e["kind"])
        if dc.export.blocks is not None:
            ctx.notes.append(
                f"export of blocks {dc.export.blocks}: no task outputs, so no metrics for the exported files"
            )
        elif own_decoding:
            ctx.notes.append(
                f"heads {own_decoding} of the exported files are scored by decoding their ONNX Runtime outputs "
                "with the heads' own predict_by_feat (the runtime helper postprocess.py does not know them; "
                "decode them the same way at deployment)"
            )
        if decodable and exported_heads != {hd.name for hd in model.graph.heads}:
            ctx.notes.append(
                f"only heads {sorted(exported_heads)} exported: the other tasks have no metrics there"
            )

        def exported_row(stage: str, path: Path, fn, parity: dict, n_params: int) -> dict:
            row = dict(stage=stage, file=str(path), size_mb=file_size_mb(path), params=n_params, macs=macs)
            row.update(torch_ms=None, ort_ms=None, parity=parity)
            if decodable:
                row["metrics"] = st.metrics(model, stage, outputs_fn=fn, manifest=manifest, wrapper=wrapper)
            st.time_later(row, "ort_ms" if onnx_export else "torch_ms", fn)
            return st.add(row)

        fp32_parity = dict(
            reference="PyTorch fp32",
            max_abs_diff=diff,
            tolerance=tol,
            ok=parity_ok,
            batch=int(eval_batch.shape[0]),
        )
        exported_row(
            f"exported fp32 {label}" + (" (pruned, before QAT)" if qat and dc.pruning is not None else ""),
            fp32,
            run_fp32,
            fp32_parity,
            onnx_elements(fp32) if onnx_export else count_params(model),
        )
        if q is not None and q.method in ("static", "dynamic") and q.onnx_side:
            t0 = time.perf_counter()
            int8 = q.quantize_onnx(fp32, out / "model_int8.onnx", calib)
            ctx.steps.append(
                dict(
                    step="quantization",
                    method=f"{q.method} ONNX Runtime QDQ",
                    seconds=round(time.perf_counter() - t0, 1),
                )
            )
            (out / "model_int8.json").write_text(json.dumps(manifest, indent=2))
            run_int8 = ort_runner(int8, ctx.threads)
            parity = dict(
                reference="PyTorch fp32",
                max_abs_diff=max_abs_diff(ref_out, run_int8(eval_batch)),
                tolerance=None,
                ok=None,
            )
            exported_row(f"exported int8 ONNX (ORT {q.method})", int8, run_int8, parity, onnx_elements(int8))
        if qmodel is not None and onnx_export:
            qwrap = dc.export.wrap(qmodel, example)
            path = dc.export.export(qwrap, example, out / "model_int8_pt2e.onnx")
            (out / "model_int8_pt2e.json").write_text(json.dumps(manifest, indent=2))
            run_q = ort_runner(path, ctx.threads)
            dq = max_abs_diff(torch_runner(qwrap, qwrap.output_names)(eval_batch), run_q(eval_batch))
            parity = dict(reference="PT2E int8 PyTorch", max_abs_diff=dq, tolerance=None, ok=None)
            exported_row("exported int8 ONNX (PT2E)", path, run_q, parity, onnx_elements(path))
        if onnx_export:
            ctx.notes.append(
                "MACs of an exported file are those of the PyTorch model it came from (FlopCounterMode); the int8 "
                "files do the same multiply-accumulates in int8."
            )
    st.measure_latencies()

    b = dc.benchmark
    env = dict(cpu_info(), threads=ctx.threads, runs=b.runs, warmup=b.warmup, input_size=[h, w])
    report = dict(
        config=str(ctx.args.config),
        checkpoint=str(ctx.args.checkpoint),
        deploy_config=str(ctx.args.deploy_config),
        deploy=ctx.dc.raw,
        environment=env,
        eval_samples=len(loader.dataset),
        stages=ctx.stages,
        steps=ctx.steps,
        notes=ctx.notes,
        parity_ok=parity_ok,
    )
    json_path, md_path = write_report(out, report)
    print(f"report: {md_path} and {json_path}")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    with user_errors():
        ctx = setup(args)
    report = run(ctx)
    if not report["parity_ok"]:
        print(
            f"error: the fp32 export misses parity (tolerance {ctx.dc.evaluation.parity_atol:g}); see {ctx.out / 'report.md'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
