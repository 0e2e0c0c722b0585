"""Run a trained (or deployed) multi-task model on your own images, folders and videos.

examples:
  uv run infer.py configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1300.pth \\
                  --input photos/ --out infer_out/
  uv run infer.py C --model deploy_out/quickstart/model_int8.onnx --input 'shots/*.jpg' --out D --batch-size 8
  uv run infer.py C --checkpoint K --input street.mp4 --out D --heads det_head seg_head --device cuda
  uv run infer.py C --checkpoint K --input a.jpg b.png --out D --score-thr 0.5

Images (a file, a folder, a glob, several of them): <out>/vis/<image>.png (the input and one panel per head),
<out>/predictions.jsonl (one line per image: boxes, scores, labels, class names; paths of the map files),
<out>/<head>/<image>.png (segmentation: palette PNG label maps; depth: 16-bit PNG in millimetres).
A video (mp4, avi, ...): <out>/<video> annotated at the same frame rate and size, <out>/<video>.jsonl (one line
per frame). The pre-processing is the config's test pipeline; class names come from the config's sources.
A file in a folder that is not an image is skipped with a warning, an unreadable one skipped and counted.
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

from multitask_vision.engine.launch import (
    DictAction,
    add_config_argument,
    add_out_argument,
    load_config,
    parse_cli,
    user_errors,
)
from multitask_vision.utils.errors import UserError, writable_dir


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--checkpoint", help="trained weights: Runner checkpoint, state dict or pruned model file"
    )
    weights.add_argument("--model", help="an exported file of deploy.py: model_fp32.onnx, model_int8.onnx")
    p.add_argument(
        "--input", nargs="+", required=True, metavar="PATH", help="images, folders, globs or videos"
    )
    add_out_argument(p, "output folder", required=True)
    p.add_argument("--heads", nargs="+", help="run only these heads (default: all)")
    p.add_argument(
        "--score-thr", type=float, default=0.3, help="keep and draw boxes scored at least this (0.3)"
    )
    p.add_argument("--batch-size", type=int, default=1, help="images (or video frames) per forward pass (1)")
    p.add_argument("--device", help="cpu / cuda (default: cuda when available, for --checkpoint)")
    p.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime threads (default: theirs)")
    p.add_argument("--panel-size", type=int, default=256, help="long side of a drawn panel in pixels (256)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    return parse_cli(p, argv)


def setup(args: argparse.Namespace):
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    cfg = load_config(args.config, args.cfg_options)
    import torch

    import multitask_vision
    from multitask_vision.apis import MultiTaskInferencer
    from multitask_vision.visualization import PredictionPainter

    multitask_vision.register_all_modules()
    if args.threads:
        torch.set_num_threads(args.threads)
    inferencer = MultiTaskInferencer(
        cfg,
        args.checkpoint,
        onnx=args.model,
        heads=args.heads,
        device=args.device,
        batch_size=args.batch_size,
        score_thr=args.score_thr,
        threads=args.threads,
    )
    vis = dict(cfg.get("visualization") or {})
    painter = PredictionPainter(
        inferencer.heads,
        inferencer.styles,
        drawers=vis.get("drawers"),
        score_thr=args.score_thr,
        panel_size=args.panel_size,
    )
    writable_dir(args.out)  # before the first image is run, not at its first write
    return inferencer, painter


def main(argv=None) -> None:
    args = parse_args(argv)
    with user_errors():
        inferencer, painter = setup(args)
    from multitask_vision.apis.inputs import is_video
    from multitask_vision.apis.outputs import infer_images, infer_video

    out = Path(args.out)
    model_file = args.model or args.checkpoint
    videos = [i for i in args.input if is_video(i) and not glob.has_magic(i)]
    images = [i for i in args.input if i not in videos]
    t0 = time.perf_counter()
    with user_errors(UserError):  # an input or a model file at fault; a bug keeps its traceback
        for video in videos:
            stats, written = infer_video(
                inferencer, video, out, painter, batch_size=args.batch_size, model_file=model_file
            )
            print(f"{video}: {stats.summary('frames')}; wrote {written}", flush=True)
        if images:
            stats = infer_images(
                inferencer, images, out, painter, batch_size=args.batch_size, model_file=model_file
            )
            print(f"{stats.summary('images')}; wrote {out}/predictions.jsonl, {out}/vis/", flush=True)
    print(
        f"done in {time.perf_counter() - t0:.1f} s ({inferencer.backend.description}, batch {args.batch_size})"
    )


if __name__ == "__main__":
    main()
