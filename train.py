"""Train a multi-task model from a config with mmengine's Runner.

examples:
  uv run train.py configs/quickstart.py                  # (--config configs/quickstart.py works too)
  uv run train.py configs/quickstart.py --resume         # continue from the work dir's last checkpoint
  uv run train.py C --cfg-options train_cfg.max_iters=100 optim_wrapper.optimizer.lr=1e-3
  uv run train.py C --eval-only --checkpoint work_dirs/x/iter_1000.pth
  uv run torchrun --nproc_per_node=2 train.py C --launcher pytorch        # one machine, 2 processes
  uv run torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST0 --master_port=29500 \
      train.py C --launcher pytorch                      # node 0 of 2; node 1 runs the same with --node_rank=1
  srun -N 2 --ntasks-per-node=8 --gpus-per-node=8 uv run train.py C --launcher slurm
"""

from __future__ import annotations

import argparse
import logging
import os

from multitask_vision.engine.launch import (
    LAUNCHERS,
    DictAction,
    add_config_argument,
    load_config,
    parse_cli,
    setup_distributed,
    user_errors,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    p.add_argument("--work-dir", help="where logs and checkpoints go (default work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="resume training: alone, from the last checkpoint in the work dir; or from the given checkpoint "
        "(a file, or a work dir: its last checkpoint)",
    )
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA): fp16 autocast")
    p.add_argument("--amp-dtype", choices=["float16", "bfloat16"], default="float16", help="autocast dtype")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    p.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="none",
        help="how the processes were started (mmengine's launchers): pytorch = torchrun, slurm = srun, mpi = mpirun",
    )
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="no training: evaluate on test_dataloader with test_evaluator (of --checkpoint, or of the "
        "freshly initialised model when none is given); metrics also in <work_dir>/test_metrics.json",
    )
    p.add_argument(
        "--checkpoint",
        help="with --eval-only: the checkpoint to evaluate (or a work dir: its last checkpoint)",
    )
    return parse_cli(p, argv)


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
    from multitask_vision.utils.checkpoint import resolve_checkpoint

    if args.checkpoint:
        cfg.load_from = str(resolve_checkpoint(args.checkpoint))  # a work dir: its last checkpoint
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
    if args.resume == "auto" or (args.resume and os.path.isdir(args.resume)):
        # the newest whole checkpoint of the (given) work dir; none is an error
        from multitask_vision.engine.resume import resume_checkpoint

        work_dir = cfg.work_dir if args.resume == "auto" else args.resume
        cfg.resume, cfg.load_from = True, resume_checkpoint(work_dir)
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

    multitask_vision.register_all_modules(init_default_scope=False)  # the Runner sets cfg.default_scope
    return Runner.from_cfg(cfg)


if __name__ == "__main__":
    main()
