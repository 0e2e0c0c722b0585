"""Draw a trained model's predictions next to the ground truth, for a few samples of every source; or, with
--no-model, the ground truth alone as the training pipeline delivers it (browse a dataset before training).

examples:
  uv run visualize.py configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1300.pth
  uv run visualize.py C --checkpoint work_dirs/quickstart         # a work dir: its last checkpoint
  uv run visualize.py C --checkpoint K --split val --num 4 --out vis/ --score-thr 0.3
  uv run visualize.py C --checkpoint deploy_out/quickstart/pruned_finetuned.pth     # a pruned model file
  uv run visualize.py C --no-model --num 8                        # the training data, after its transforms

Writes one PNG per sample, <out>/<source>/<image name>.png: a row per head (input | prediction | ground truth
| extra panels, e.g. the depth error | legend / colour scales); a task the sample is not labelled for shows
its prediction only. The tasks come from the config's heads; a head is drawn by the drawer of the field it
predicts (see multitask_vision/visualization), or the config's visualization=dict(drawers=dict(task='Name')).
With --no-model (default --split train, default --out <work_dir>/browse): a row per task of the sample's source
(input | ground truth | key), drawn on the image the pipeline produced (flipped, resized, cropped, distorted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multitask_vision.engine.launch import (
    DictAction,
    add_config_argument,
    add_out_argument,
    load_config,
    parse_cli,
    user_errors,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    p.add_argument(
        "--checkpoint",
        help="that config's trained model: Runner checkpoint, state dict, pruned model file, or a work dir "
        "(its last checkpoint)",
    )
    p.add_argument(
        "--no-model",
        action="store_true",
        help="no model: draw the ground truth as the pipeline delivers it (browse the data before training)",
    )
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="whose dataloader's data (default val; train with --no-model)",
    )
    p.add_argument("--num", type=int, default=4, help="samples per source (default 4)")
    add_out_argument(p, "output folder (default <work_dir>/vis, with --no-model <work_dir>/browse)")
    p.add_argument("--score-thr", type=float, help="draw boxes scored at least this (default 0.3)")
    p.add_argument("--panel-size", type=int, help="long side of a panel in pixels (default 256)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    return parse_cli(p, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with user_errors():
        renderer, batches, out_dir = setup(args)
    import mmcv

    from multitask_vision.visualization import DrawerError

    written = []
    for source, batch in batches:
        try:
            grids = renderer.render(batch)
        except DrawerError as e:  # a task without a drawer: a config problem, not a bug
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        for grid in grids:
            assert grid.image is not None
            path = out_dir / (grid.source or source) / f"{grid.name}.png"
            mmcv.imwrite(grid.image[..., ::-1], str(path))  # RGB -> BGR for OpenCV; creates the folder
            written.append(path)
            print(f"wrote {path}  ({grid.image.shape[1]}x{grid.image.shape[0]})", flush=True)
    if not written:
        print("error: no samples to draw (empty split?)", file=sys.stderr)
        sys.exit(2)


def setup(args: argparse.Namespace):
    if args.num < 1:
        raise ValueError(f"--num must be at least 1, got {args.num}")
    if args.no_model and args.checkpoint:
        raise ValueError("--no-model draws the data without a model: drop --checkpoint")
    if not args.no_model and not args.checkpoint:
        raise ValueError("--checkpoint is required (or --no-model, to browse the data without a model)")
    split = args.split or ("train" if args.no_model else "val")
    cfg = load_config(args.config, args.cfg_options)
    loader = cfg.get(f"{split}_dataloader")
    if not loader or "dataset" not in loader:
        raise ValueError(f"config {args.config} has no {split}_dataloader.dataset")

    import torch

    import multitask_vision
    from multitask_vision.models.builder import build_model
    from multitask_vision.registry import DATASETS
    from multitask_vision.utils.errors import writable_dir
    from multitask_vision.visualization import GridRenderer, GroundTruthRenderer, source_tasks, task_styles
    from multitask_vision.visualization.runtime import source_batches

    multitask_vision.register_all_modules()
    defaults = {
        k: v for k, v in (("score_thr", args.score_thr), ("panel_size", args.panel_size)) if v is not None
    }
    vis_cfg = {**dict(cfg.get("visualization") or {}), **defaults}
    if args.no_model:
        dataset = DATASETS.build(loader["dataset"])
        renderer = GroundTruthRenderer.from_config(source_tasks(dataset), vis_cfg, task_styles(dataset))
        out_dir = writable_dir(Path(args.out) if args.out else Path(cfg.work_dir) / "browse")
        return renderer, source_batches(dataset, args.num), out_dir
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg, args.checkpoint, device=device)
    dataset = DATASETS.build(loader["dataset"])
    renderer = GridRenderer.from_config(model, vis_cfg, task_styles(dataset))
    out_dir = writable_dir(Path(args.out) if args.out else Path(cfg.work_dir) / "vis")
    return renderer, source_batches(dataset, args.num), out_dir


if __name__ == "__main__":
    main()
