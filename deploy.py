"""Deploy a trained multi-task model: prune -> fine-tune -> quantize -> export -> verify -> report.

uv run deploy.py --config configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1000.pth \
                 --deploy-config configs/deploy.py --output deploy_out/quickstart
uv run deploy.py ... --deploy-options pruning.amount=0.5 evaluation.max_samples=100

Writes into --output: the artefacts of each stage (original.pth, pruned.pth,
quantized_*.pt2, model_fp32.onnx, model_int8.onnx, a manifest .json per exported file for the runtime helper),
report.json and report.md. The pipeline is multitask_vision.compression.pipeline.
Exit code 2 on a bad config or input (one line), 1 when the fp32 export misses parity.
"""

from __future__ import annotations

import argparse
import logging
import sys

from multitask_vision.engine.launch import DictAction, user_errors

# torchao registers an Enum with torch's pytree at import and torch warns about it: not ours to fix
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config of the model (.py)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="trained model: Runner checkpoint, state dict or pruned model file",
    )
    p.add_argument("--deploy-config", required=True, help="deploy config (.py), e.g. configs/deploy.py")
    p.add_argument("--output", dest="out", required=True, help="output folder")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override training-config keys")
    p.add_argument("--deploy-options", nargs="+", action=DictAction, help="override deploy-config keys")
    return p.parse_args(argv)


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
