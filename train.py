"""Train a multi-task model from a config with mmengine's Runner.

uv run train.py --config configs/quickstart.py
uv run train.py --config configs/quickstart.py --resume            # continue from work_dir's last ckpt
uv run train.py --config C --cfg-options train_cfg.max_iters=100 optim_wrapper.optimizer.lr=1e-3
uv run torchrun --nproc_per_node=2 train.py --config C --launcher pytorch
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from multitask_vision.engine.launch import DictAction, load_config, setup_distributed, user_errors


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config file (.py)")
    p.add_argument("--work-dir", help="where logs and checkpoints go (default work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="resume training: alone, from the last checkpoint in the work dir; or from the given checkpoint",
    )
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA): fp16 autocast")
    p.add_argument("--amp-dtype", choices=["float16", "bfloat16"], default="float16", help="autocast dtype")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    p.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="pytorch: under torchrun")
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="no training: evaluate on test_dataloader with test_evaluator (of --checkpoint, or of the "
        "freshly initialised model when none is given); metrics also in <work_dir>/test_metrics.json",
    )
    p.add_argument("--checkpoint", help="with --eval-only: the checkpoint to evaluate")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with user_errors():
        runner = build_runner(args)
    from multitask_vision.utils.errors import TrainingDivergedError, UserError

    # inside the Runner (checkpoints it reads, datasets and samplers it builds, hooks, dataloader workers) only
    # our own error types are one line: a bug there keeps its traceback
    with user_errors(UserError, TrainingDivergedError):
        if args.eval_only:
            runner.test()  # MetricsJSONHook writes <work_dir>/test_metrics.json
        else:
            runner.train()


def build_runner(args: argparse.Namespace):
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.checkpoint and not args.eval_only:
        raise ValueError("--checkpoint is for --eval-only; to continue training use --resume CHECKPOINT")
    if args.checkpoint:
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        cfg.load_from = args.checkpoint
    if args.resume and any(
        k in (args.cfg_options or {}) for k in ("train_cfg.max_iters", "train_cfg.max_epochs")
    ):
        from mmengine.logging import print_log

        print_log(
            "--resume restores the parameter schedulers (begin/end included) from the checkpoint: the new "
            "train_cfg length changes when training stops, not the learning-rate schedule",
            logger="current",
            level=logging.WARNING,
        )
    if args.resume == "auto":  # the newest whole checkpoint of the work dir; none is an error
        from multitask_vision.engine.resume import resume_checkpoint

        cfg.resume, cfg.load_from = True, resume_checkpoint(cfg.work_dir)
    elif args.resume:
        from multitask_vision.utils.checkpoint import verify_checkpoint_file

        verify_checkpoint_file(args.resume)
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--amp needs a CUDA device (mmengine's AmpOptimWrapper); none is visible")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.dtype = args.amp_dtype
    setup_distributed(args.launcher, cfg)

    from mmengine.runner import Runner

    import multitask_vision

    multitask_vision.register_all_modules()
    return Runner.from_cfg(cfg)


if __name__ == "__main__":
    main()
