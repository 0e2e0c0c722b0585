"""Training throughput: images/s of one full training step (pre-processing, forward, every head's loss, backward,
gradient clipping, AdamW), the framework's ``train_step`` beside the hand-written model (same modules, same
batches, ``benchmarks/hand_written.py``), per precision / memory-format variant.

uv run python benchmarks/train_throughput.py                                  # CPU: fp32, channels_last
uv run python benchmarks/train_throughput.py --variants fp32 bf16 --configs quickstart
uv run python benchmarks/train_throughput.py --device cuda --variants fp32 fp16 bf16 compile   # on a GPU

Variants: ``fp32``; ``channels_last`` (weights and input images in NHWC); ``fp16`` / ``bf16`` (autocast; the
framework through mmengine's ``AmpOptimWrapper``, whose head losses the model computes in fp32; the hand-written
model the same way, with a ``GradScaler`` for fp16); ``compile`` (``torch.compile`` of every trunk block, the
blocks that are not heads: the heads' target assignment and Python-side losses stay eager). Every variant
times framework and hand-written alternately (ABBA), each round on the same batch, batches alternating
between the config's sources. Writes ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from hand_written import BY_HAND  # noqa: E402

VARIANTS = ("fp32", "channels_last", "fp16", "bf16", "compile")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["quickstart", "mmlab"], choices=list(BY_HAND))
    p.add_argument("--variants", nargs="+", default=["fp32", "channels_last"], choices=VARIANTS)
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's data)")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per variant (10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compile: more)")
    p.add_argument(
        "--hand-optimizer",
        choices=["config", "default"],
        default="config",
        help="the hand-written model's AdamW: the config's arguments (config), or only its lr and weight decay "
        "with torch's other defaults (default: as a hand-written loop usually creates it)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    C.add_common_args(p)
    return p.parse_args(argv)


class Steps:
    """The two training steps of one variant on one model: ``framework(r)`` and ``hand(r)``."""

    def __init__(
        self, name: str, model, cfg, batches: list[dict], variant: str, device: str, hand_optimizer: str
    ) -> None:
        from mmengine.optim import build_optim_wrapper

        self.model, self.batches, self.device = model, batches, device
        self.by_hand = BY_HAND[name](model)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(variant)
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        # mmengine's AmpOptimWrapper asserts a GPU: on CPU the framework's step runs under torch.autocast
        self.cpu_autocast = self.dtype is not None and not device.startswith("cuda")
        if self.dtype is not None and not self.cpu_autocast:
            optim_cfg.update(type="AmpOptimWrapper", dtype=str(self.dtype).split(".")[-1])
        self.optim = build_optim_wrapper(model, optim_cfg)
        opt_cfg = dict(cfg.optim_wrapper.optimizer)
        opt_cfg.pop("type")
        if hand_optimizer == "default":
            opt_cfg = {k: v for k, v in opt_cfg.items() if k in ("lr", "weight_decay")}
        self.hand_opt = torch.optim.AdamW(model.parameters(), **opt_cfg)
        self.max_norm = cfg.optim_wrapper.get("clip_grad", {}).get("max_norm")
        self.scaler = torch.amp.GradScaler(device) if self.dtype == torch.float16 else None

    def framework(self, r: int) -> None:
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.cpu_autocast):
            self.model.train_step(self.batches[r % len(self.batches)], self.optim)

    def hand(self, r: int) -> None:
        data = self.model.data_preprocessor(self.batches[r % len(self.batches)], True)
        autocast = torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype is not None)
        with autocast:
            loss = self.by_hand.loss(data["inputs"], data["data_samples"])
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.hand_opt)
        else:
            loss.backward()
        if self.max_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm)
        if self.scaler is not None:
            self.scaler.step(self.hand_opt)
            self.scaler.update()
        else:
            self.hand_opt.step()
        self.hand_opt.zero_grad()


def prepare(model, variant: str):
    """Apply a variant to the model in place; returns the hook handle to remove (channels_last) or None."""
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last)

        def to_nhwc(_module, _args, out):
            out["inputs"] = out["inputs"].contiguous(memory_format=torch.channels_last)
            return out

        return model.data_preprocessor.register_forward_hook(to_nhwc)
    if variant == "compile":
        for node in model.graph.nodes.values():
            if not node.is_head:
                model.blocks[node.name].compile()
    return None


def measure(name: str, variant: str, args) -> dict:
    cfg = C.load_config(name)
    model = C.build_model(cfg, args.device)
    handle = prepare(model, variant)
    batches = C.raw_batches(cfg, 2, args.size, args.batch, args.data_dir)
    try:
        steps = Steps(name, model, cfg, batches, variant, args.device, args.hand_optimizer)
        times = C.abba(
            {"hand": steps.hand, "framework": steps.framework}, args.rounds, args.device, args.warmup
        )
    except Exception as e:  # noqa: BLE001 - a variant that does not run here is a result too
        return dict(config=name, variant=variant, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    finally:
        if handle is not None:
            handle.remove()
    bs = len(batches[0]["inputs"])
    stats = C.ratio_stats(times["hand"], times["framework"])
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    side = batches[0]["inputs"][0].shape[-1]
    return dict(
        config=name,
        variant=variant,
        size=f"{side}x{side}",
        batch=bs,
        hand_img_s=bs / med["hand"],
        framework_img_s=bs / med["framework"],
        ratio=stats["median"],
        ratio_iqr=f"{stats['q1']:.3f}-{stats['q3']:.3f}",
        times=times,
    )


COLUMNS = (
    "config",
    "variant",
    "size",
    "batch",
    "hand_img_s",
    "framework_img_s",
    "ratio",
    "ratio_iqr",
    "error",
)


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    before = C.machine(args.device)
    print(C.table([], COLUMNS))
    rows = []
    for name in args.configs:
        for variant in args.variants:
            rows.append(measure(name, variant, args))
            print(C.table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(C.table(rows, COLUMNS))
    extra = dict(rounds=args.rounds, device=args.device, hand_optimizer=args.hand_optimizer)
    return C.finish("train_throughput", args, before, rows, on=args.device, **extra)


if __name__ == "__main__":
    main()
