"""Training-step time of the quickstart with lighter trunks (input to choosing a faster first run, issue #14
item 5): the quickstart's heads and data on other backbones, the framework's full ``train_step``, all models
timed in turn within each round (ABBA-style) in one process. Accuracy is not measured here: a faster trunk still
needs full training runs and re-measured single-task baselines before it can replace the quickstart's (how the
3/8-width ResNet-18 was chosen: benchmarks/README.md section 5).

uv run python benchmarks/trunks.py [--rounds 8] [--threads 2] [--trunks resnet18 resnet18_w24 mobilenet_v2 ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _fpn(inputs: list[str], channels: list[int]) -> dict:
    return dict(name="neck", type="FPN", inputs=inputs, in_channels=channels, out_channels=64)


TRUNKS = {  # name: (backbone block, neck block); the quickstart's heads stay as they are
    "resnet18": (
        dict(name="backbone", type="ResNet", inputs="img", depth=18),
        _fpn(["backbone.layer2", "backbone.layer3", "backbone.layer4"], [128, 256, 512]),
    ),
    "resnet18_w32": (  # half width
        dict(name="backbone", type="ResNet", inputs="img", depth=18, base_channels=32),
        _fpn(["backbone.layer2", "backbone.layer3", "backbone.layer4"], [64, 128, 256]),
    ),
    "resnet18_w24": (  # 3/8 width: the quickstart's trunk since issue #14 item 5
        dict(name="backbone", type="ResNet", inputs="img", depth=18, base_channels=24),
        _fpn(["backbone.layer2", "backbone.layer3", "backbone.layer4"], [48, 96, 192]),
    ),
    "mobilenet_v2": (
        dict(
            name="backbone", type="MobileNetV2", inputs="img", out_stages=("stride8", "stride16", "stride32")
        ),
        _fpn(["backbone.stride8", "backbone.stride16", "backbone.stride32"], [32, 96, 320]),
    ),
    "mobilenet_v2_x0.5": (
        dict(
            name="backbone",
            type="MobileNetV2",
            inputs="img",
            width_mult=0.5,
            out_stages=("stride8", "stride16", "stride32"),
        ),
        _fpn(["backbone.stride8", "backbone.stride16", "backbone.stride32"], [16, 48, 160]),
    ),
    "timm_convnext_atto": (
        dict(name="backbone", type="timm.convnext_atto", inputs="img", out_indices=(1, 2, 3)),
        _fpn(["backbone.stage1", "backbone.stage2", "backbone.stage3"], [80, 160, 320]),
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunks", nargs="+", default=list(TRUNKS), choices=list(TRUNKS))
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the quickstart's)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the quickstart's data)")
    p.add_argument("--rounds", type=int, default=8)
    C.add_common_args(p)
    return p.parse_args(argv)


def config(trunk: str):
    cfg = C.load_config("quickstart")
    blocks = copy.deepcopy(cfg.model.blocks)
    blocks[0], blocks[1] = copy.deepcopy(TRUNKS[trunk])
    cfg.model.blocks = blocks
    return cfg


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.setup(args.threads)
    from mmengine.optim import build_optim_wrapper

    before = C.machine()
    batches = C.raw_batches(config(args.trunks[0]), 2, args.size, args.batch, args.data_dir)
    fns, params = {}, {}
    for trunk in args.trunks:
        cfg = config(trunk)
        model = C.build_model(cfg)
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        fns[trunk] = lambda r, m=model, o=optim: m.train_step(batches[r % len(batches)], o)
        params[trunk] = sum(p.numel() for p in model.parameters()) / 1e6
    times = C.abba(fns, args.rounds)
    ref = args.trunks[0]
    rows = [
        dict(
            trunk=t,
            params_m=params[t],
            step_ms=1000 * statistics.median(times[t]),
            speedup_vs_first=C.ratio_stats(times[ref], times[t])["median"],
        )
        for t in args.trunks
    ]
    print(C.table(rows, ("trunk", "params_m", "step_ms", "speedup_vs_first")))
    return C.finish("trunks", args, before, rows)


if __name__ == "__main__":
    main()
