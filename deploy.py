"""Deploy a trained multi-task model: prune -> fine-tune -> quantize -> export -> verify -> report.

examples:
  uv run deploy.py configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1300.pth \
                   --deploy-config configs/deploy.py --out deploy_out/quickstart
  uv run deploy.py C --checkpoint K --deploy-config configs/deploy_qat.py --out D \
                   --deploy-options pruning.amount=0.5 evaluation.max_samples=100    # override any key
  uv run deploy.py C --checkpoint deploy_out/quickstart/pruned_finetuned.pth --deploy-config \
                   configs/deploy_backbone_only.py --out D                  # start from a pruned model file

Writes into --out (--output works too): the artefacts of each stage (original.pth, pruned.pth,
quantized_*.pt2, model_fp32.onnx, model_int8.onnx, a manifest .json per exported file for the runtime helper),
report.json and report.md. The pipeline is multitask_vision.compression.pipeline.
Exit code 2 on a bad config or input (one line), 1 when the fp32 export misses parity.
"""

from __future__ import annotations

import argparse
import sys

from multitask_vision.engine.launch import (
    DictAction,
    add_config_argument,
    add_out_argument,
    parse_cli,
    user_errors,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    p.add_argument(
        "--checkpoint",
        required=True,
        help="trained model: Runner checkpoint, state dict, pruned model file, or a work dir (its last checkpoint)",
    )
    p.add_argument("--deploy-config", required=True, help="deploy config (.py), e.g. configs/deploy.py")
    add_out_argument(p, "output folder", required=True)
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override training-config keys")
    p.add_argument("--deploy-options", nargs="+", action=DictAction, help="override deploy-config keys")
    return parse_cli(p, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import multitask_vision
    from multitask_vision.compression.pipeline import prepare, run_pipeline

    multitask_vision.register_all_modules()
    with user_errors():
        run = prepare(
            args.config,
            args.checkpoint,
            args.deploy_config,
            args.out,
            cfg_options=args.cfg_options,
            deploy_options=args.deploy_options,
        )
    report = run_pipeline(run)
    if not report["parity_ok"]:
        tol = run.dc.evaluation.parity_atol
        print(
            f"error: the fp32 export misses parity (tolerance {tol:g}); see {run.out / 'report.md'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
