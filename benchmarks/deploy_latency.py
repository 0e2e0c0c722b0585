"""Deploy latency: torch eager, ONNX Runtime fp32, int8 and pruned + int8 of a model config, at batch 1 and 8,
and the ONNX Runtime int8 settings that decide how much int8 gains on this CPU.

uv run python benchmarks/deploy_latency.py                         # HydraNet (MobileNetV2 + RefineNet)
uv run python benchmarks/deploy_latency.py --config quickstart --checkpoint work_dirs/quickstart/iter_1300.pth

The model is the config's (its own initialisation unless ``--checkpoint``: latency does not depend on the
weights, pruning's channel choice does a little), pruned by the deploy pipeline's ``PhysicalPruning`` (30 %,
``round_to=8``), exported by its ONNX export (all heads, dynamic batch, opset 18) and quantized by ONNX Runtime's
``quantize_static`` calibrated on real pre-processed training batches. int8 variants of the pruned fp32 file:

* ``qdq``: the pipeline's setting (``compression/ort_quantization.py``): QDQ, per-channel int8 weights, uint8
  activations;
* ``qdq_tensor``: the same, per-tensor weights; ``qop`` / ``qop_tensor``: QOperator format (QLinearConv ...);
* ``pre+...``: the fp32 file first through ``onnxruntime.quantization.shape_inference.quant_pre_process``
  (symbolic shapes and ORT's basic graph optimisations, e.g. BatchNorm folded into the convolutions, *before*
  quantizing).

Every file is timed in ONNX Runtime at graph optimisation level ``all`` (and the best int8 at ``extended`` /
``basic``), with ``--threads`` intra-op threads (and 2). All sessions are timed in turn within each round (the
order reversed every other round), median over rounds. Writes ``benchmarks/results/deploy_latency.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

INT8 = {  # name: (quant format, per_channel, pre-process)
    "qdq": ("QDQ", True, False),
    "qdq_tensor": ("QDQ", False, False),
    "qop": ("QOperator", True, False),
    "qop_tensor": ("QOperator", False, False),
    "pre+qdq": ("QDQ", True, True),
    "pre+qop": ("QOperator", True, True),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="hydranet", help="a name of benchmarks/_common.CONFIGS or a path")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's data)")
    p.add_argument("--int8", nargs="+", default=list(INT8), choices=list(INT8))
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (15)")
    p.add_argument("--runs", type=int, default=5, help="runs per session per round, the median kept (5)")
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--no-extra", action="store_true", help="skip the opt-level and 2-thread rows")
    p.add_argument("--no-original", action="store_true", help="skip the unpruned model's rows (faster)")
    C.add_common_args(p)
    return p.parse_args(argv)


def quantize(src: Path, dst: Path, batches, fmt: str, per_channel: bool, pre: bool) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from multitask_vision.compression.ort_quantization import _Reader, quiet_onnxruntime_logging

    class Reader(_Reader, CalibrationDataReader):
        pass

    with quiet_onnxruntime_logging():
        if pre:
            pre_path = dst.with_suffix(".pre.onnx")
            quant_pre_process(str(src), str(pre_path))
            src = pre_path
        quantize_static(
            str(src),
            str(dst),
            Reader(batches, "input"),
            quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return dst


def session(path: Path, threads: int, level: str = "all"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"input": x})


def build_files(args, work: Path) -> tuple[dict, dict, list]:
    """Models and files: ``{row name: (kind, object)}`` for torch modules and ONNX files, plus sizes."""
    from multitask_vision.compression.export import ExportWrapper, export_onnx
    from multitask_vision.compression.pruning import PhysicalPruning
    from multitask_vision.utils.checkpoint import load_weights

    cfg = C.load_config(args.config)
    model = C.build_model(cfg).eval()
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    batches = [x for x, _ in C.pipeline_batches(cfg, model, args.calib_batches // 2 or 1, args.size)]
    example = batches[0][:1]
    pruned = copy.deepcopy(model)
    PhysicalPruning(amount=0.3, round_to=8).apply(pruned, example)
    rows: dict[str, tuple[str, object]] = {}
    files: dict[str, Path] = {}
    for tag, m in (("original", model), ("pruned", pruned))[1 if args.no_original else 0 :]:
        wrapper = ExportWrapper(m, example).eval()
        rows[f"torch eager {tag}"] = ("torch", wrapper)
        # a dynamic batch is exported from an example of 2 (torch.export specialises a batch of 1)
        files[f"ORT fp32 {tag}"] = export_onnx(
            wrapper, batches[0][:2], work / f"{tag}.onnx", opset=18, dynamic_batch=True
        )
    calib = [b.cpu() for b in batches]
    if not args.no_original:
        files["ORT int8 original (qdq)"] = quantize(
            files["ORT fp32 original"], work / "orig_qdq.onnx", calib, "QDQ", True, False
        )
    for name in args.int8:
        fmt, per_channel, pre = INT8[name]
        files[f"ORT int8 pruned ({name})"] = quantize(
            files["ORT fp32 pruned"],
            work / f"pruned_{name.replace('+', '_')}.onnx",
            calib,
            fmt,
            per_channel,
            pre,
        )
    sizes = {k: round(v.stat().st_size / 2**20, 2) for k, v in files.items()}
    return rows, files, [sizes, batches[0]]


def time_round(fns: dict, x: np.ndarray, runs: int, reverse: bool) -> dict[str, float]:
    out = {}
    for name in reversed(list(fns)) if reverse else list(fns):
        ts = []
        for _ in range(runs):
            start = time.perf_counter()
            fns[name](x)
            ts.append(time.perf_counter() - start)
        out[name] = statistics.median(ts)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    before = C.machine()
    with tempfile.TemporaryDirectory() as tmp:
        mods, files, (sizes, batch) = build_files(args, Path(tmp))
        fns = {}
        for name, (_, wrapper) in mods.items():
            fns[name] = lambda x, w=wrapper: w(torch.from_numpy(x))
        for name, path in files.items():
            fns[name] = session(path, args.threads)
        best_candidates = [k for k in files if k.startswith("ORT int8 pruned")]
        results = {}
        for bs in args.batch_sizes:
            x = (
                batch[:1].repeat(bs, 1, 1, 1).numpy().astype(np.float32)
                if batch.shape[0] < bs
                else batch[:bs].numpy()
            )
            x = np.ascontiguousarray(x, dtype=np.float32)
            extra = {}
            with torch.inference_mode():
                for f in fns.values():
                    f(x)  # warm-up
                times: dict[str, list[float]] = {n: [] for n in fns}
                for r in range(args.rounds):
                    for n, t in time_round(fns, x, args.runs, r % 2 == 1).items():
                        times[n].append(t)
            results[bs] = {n: 1000 * statistics.median(v) for n, v in times.items()}
            if not args.no_extra:
                best = min(best_candidates, key=lambda k: results[bs][k])
                extra = {
                    f"{best} level=extended": session(files[best], args.threads, "extended"),
                    f"{best} level=basic": session(files[best], args.threads, "basic"),
                    f"{best} 2 threads": session(files[best], 2),
                    "ORT fp32 pruned 2 threads": session(files["ORT fp32 pruned"], 2),
                    best: fns[best],
                    "ORT fp32 pruned": fns["ORT fp32 pruned"],
                }
                for f in extra.values():
                    f(x)
                etimes: dict[str, list[float]] = {n: [] for n in extra}
                for r in range(args.rounds):
                    for n, t in time_round(extra, x, args.runs, r % 2 == 1).items():
                        etimes[n].append(t)
                results[f"{bs} extra"] = {n: 1000 * statistics.median(v) for n, v in etimes.items()}
            print(f"batch {bs}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in results[bs].items()), flush=True)
    ref = "ORT fp32 pruned"
    rows = []
    for key, res in results.items():
        for name, ms in res.items():
            rows.append(
                dict(
                    batch=key,
                    row=name,
                    ms=ms,
                    speedup_vs_pruned_fp32=res[ref] / ms,
                    size_mb=sizes.get(name.split(" level=")[0].split(" 2 threads")[0], ""),
                )
            )
    cols = ("batch", "row", "ms", "speedup_vs_pruned_fp32", "size_mb")
    print()
    print(C.table(rows, cols))
    extra = dict(config=args.config, checkpoint=args.checkpoint, threads=args.threads, rounds=args.rounds)
    name = f"deploy_latency_{args.config}"
    return C.finish("deploy_latency", args, before, rows, name=name, **extra, runs=args.runs)


if __name__ == "__main__":
    main()
