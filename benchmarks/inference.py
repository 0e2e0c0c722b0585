"""Inference through MultiTaskInferencer on the quickstart validation images: the checkpoint, its fp32 ONNX
export and its int8 ONNX file, scored the same way, how far int8 moves the predictions from fp32, and the
throughput of each at batch 1 and 8.

uv run benchmarks/inference.py --checkpoint work_dirs/quickstart/iter_1300.pth --deploy-dir deploy_out/int8

``--deploy-dir``: what ``deploy.py --deploy-config configs/deploy_int8.py`` wrote for that checkpoint
(``model_fp32.onnx``, ``model_int8.onnx`` and their manifests; no pruning, so all three are the same network).
Writes ``benchmarks/results/<name>.json`` and ``.md``:

* metrics: the config's test evaluator on every validation image, each model's predictions coming from the
  inferencer (image files -> test pipeline -> model -> decoding), as for a user's own images;
* agreement of int8 (and of fp32) with the model it came from: box mAP@0.5 of its boxes against the reference's
  boxes scored >= 0.3 as ground truth, share of identical label-map pixels, mean relative depth difference;
* throughput: images/s of the whole inferencer (reading, pre-processing, model, decoding; no drawing) on the
  same images, every model and batch size timed in turn within each round (median of the rounds), fixed threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/quickstart.py")
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint the files were exported from")
    p.add_argument("--deploy-dir", required=True, help="deploy.py --out of configs/deploy_int8.py")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--images", type=int, default=64, help="images per throughput measurement (64)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, after one warm-up round (5)")
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (1)")
    p.add_argument("--name", default="inference_quickstart", help="results file name (no suffix)")
    return p.parse_args(argv)


def build(args) -> dict:
    from multitask_vision.apis import MultiTaskInferencer

    d = Path(args.deploy_dir)
    return {
        "checkpoint (PyTorch)": MultiTaskInferencer(args.config, args.checkpoint, device="cpu"),
        "ONNX fp32": MultiTaskInferencer(args.config, onnx=d / "model_fp32.onnx", threads=args.threads),
        "ONNX int8": MultiTaskInferencer(args.config, onnx=d / "model_int8.onnx", threads=args.threads),
    }


def score(inferencer, cfg, dataset) -> tuple[dict, list]:
    """The config's test evaluator on the inferencer's predictions of every validation image (read from its
    file), and the per-image predictions (numpy) for the agreement measures."""
    from mmengine.dataset import pseudo_collate

    from multitask_vision.apis.inferencer import InferenceStats
    from multitask_vision.apis.inputs import InputItem
    from multitask_vision.compression.report import build_evaluator

    evaluator = build_evaluator(cfg, dataset)
    stats, kept = InferenceStats(), []
    for start in range(0, len(dataset), 8):
        data = pseudo_collate([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
        samples = data["data_samples"]
        preds = inferencer.predict_items(
            [InputItem(str(i), path=s.img_path) for i, s in enumerate(samples)], stats
        )
        for sample, pred in zip(samples, preds):
            for head_sample in pred.samples.values():
                for field in head_sample.keys():
                    if field.startswith("pred_"):
                        setattr(sample, field, getattr(head_sample, field))
            kept.append(pred.heads)
        evaluator.process(data_samples=samples, data_batch=data)
    return {k: float(v) for k, v in evaluator.evaluate(len(dataset)).items()}, kept


def agreement(ref: list, other: list, heads: dict, num_classes: int, thr: float = 0.3) -> dict:
    from mmdet.evaluation.functional import eval_map

    out = {}
    det = next((h for h, t in heads.items() if t == "detection"), None)
    if det:
        results, annotations = [], []
        for r, o in zip(ref, other):
            rd, od = r[det], o[det]
            keep = rd["scores"] >= thr
            annotations.append(dict(bboxes=rd["bboxes"][keep], labels=rd["labels"][keep]))
            dets = np.concatenate([od["bboxes"], od["scores"][:, None]], 1)
            results.append([dets[od["labels"] == c] for c in range(num_classes)])
        out["box_map50_vs_reference"] = float(eval_map(results, annotations, iou_thr=0.5, logger="silent")[0])
    seg = next((h for h, t in heads.items() if t == "segmentation"), None)
    if seg:
        same = sum(int((r[seg]["label_map"] == o[seg]["label_map"]).sum()) for r, o in zip(ref, other))
        total = sum(r[seg]["label_map"].size for r in ref)
        out["label_map_pixel_agreement"] = same / total
    depth = next((h for h, t in heads.items() if t == "depth"), None)
    if depth:
        rel = [
            np.mean(np.abs(o[depth]["depth"] - r[depth]["depth"]) / r[depth]["depth"])
            for r, o in zip(ref, other)
        ]
        out["depth_mean_relative_difference"] = float(np.mean(rel))
    return out


def throughput(models: dict, items: list, batch_sizes: list[int], rounds: int) -> list[dict]:
    """Images/s and per-image ms per stage of every (model, batch size), timed in turn within each round so a
    change of load on a shared machine hits them alike; the first round is a warm-up."""
    from multitask_vision.apis.inferencer import STAGES, InferenceStats
    from multitask_vision.apis.inputs import chunks

    runs: dict[tuple[str, int], list[InferenceStats]] = {(m, b): [] for m in models for b in batch_sizes}
    for r in range(rounds + 1):
        for (label, bs), kept in runs.items():
            stats = InferenceStats()
            t0 = time.perf_counter()
            for group in chunks(items, bs):
                models[label].predict_items(group, stats)
            stats.wall = time.perf_counter() - t0
            if r:
                kept.append(stats)
        print(f"round {r}/{rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
    rows = []
    for (label, bs), kept in runs.items():
        rate = statistics.median(s.images / s.wall for s in kept)
        ms = {st: statistics.median(1e3 * s.seconds[st] / s.images for s in kept) for st in STAGES}
        rows.append(dict(model=label, batch=bs, images_per_s=rate, ms_per_image=ms))
    return rows


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# Inference on the quickstart validation images",
        "",
        f"<!-- generated by benchmarks/inference.py on {result['date']} -->",
        "",
        f"Checkpoint `{result['checkpoint']}`, files of `{result['deploy_dir']}` (configs/deploy_int8.py: no "
        f"pruning, ONNX Runtime static int8). {env['cpu']} ({env['logical_cpus']} logical CPUs), "
        f"{result['threads']} thread(s) for torch and ONNX Runtime, torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']}; load average {result['load_before']:.1f} before, {result['load_after']:.1f} after "
        f"(a shared machine). Throughput over {result['images']} validation images, median of "
        f"{result['rounds']} rounds; metrics on all {result['eval_samples']} validation images.",
        "",
        "| model | batch | images/s | preprocess ms | model ms | decode ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["throughput"]:
        ms = row["ms_per_image"]
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['images_per_s']:.1f} | {ms['preprocess']:.2f} | "
            f"{ms['model']:.2f} | {ms['decode']:.2f} |"
        )
    keys = result["metric_columns"] or list(next(iter(result["metrics"].values())))
    lines += ["", "| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for label, metrics in result["metrics"].items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics[k]:.4g}" for k in keys) + " |")
    lines += ["", "| compared | " + " | ".join(next(iter(result["agreement"].values()))) + " |"]
    lines.append("|---|" + "---|" * len(next(iter(result["agreement"].values()))))
    for pair, values in result["agreement"].items():
        lines.append(f"| {pair} | " + " | ".join(f"{v:.4f}" for v in values.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import multitask_vision
    from multitask_vision.apis.inputs import InputItem
    from multitask_vision.compression.report import cpu_info, eval_dataset
    from multitask_vision.models.builder import as_config

    multitask_vision.register_all_modules()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    cfg = as_config(args.config)
    dataset = eval_dataset(cfg)
    models = build(args)
    heads = next(iter(models.values())).heads
    det = next((h for h, t in heads.items() if t == "detection"), None)
    num_classes = len(next(iter(models.values())).classes(det) or ()) if det else 0

    from multitask_vision.compression.report import build_evaluator
    from multitask_vision.evaluation.evaluator import primary_metrics

    primary = [k for k, _ in primary_metrics(build_evaluator(cfg, dataset))]
    metrics, preds = {}, {}
    for label, inferencer in models.items():
        print(f"scoring {label} on {len(dataset)} images", flush=True)
        metrics[label], preds[label] = score(inferencer, copy.deepcopy(cfg), dataset)
    ckpt, fp32, int8 = list(models)
    agree = {
        f"{fp32} vs {ckpt}": agreement(preds[ckpt], preds[fp32], heads, num_classes),
        f"{int8} vs {fp32}": agreement(preds[fp32], preds[int8], heads, num_classes),
    }
    idx = np.linspace(0, len(dataset) - 1, args.images).round().astype(int)
    items = [InputItem(str(i), path=dataset[int(i)]["data_samples"].img_path) for i in idx]
    rows = throughput(models, items, args.batch_sizes, args.rounds)
    result = dict(
        date=time.strftime("%Y-%m-%d %H:%M"),
        config=args.config,
        checkpoint=args.checkpoint,
        deploy_dir=args.deploy_dir,
        environment=cpu_info(),
        threads=args.threads,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        images=len(items),
        rounds=args.rounds,
        eval_samples=len(dataset),
        throughput=rows,
        metric_columns=primary,
        metrics=metrics,
        agreement=agree,
    )
    out = ROOT / "benchmarks" / "results" / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
