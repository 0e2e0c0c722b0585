"""Training-step time of the quickstart model with its ResNet-18 trunk and with timm's ConvNeXt-Atto trunk.

uv run benchmarks/train_step_timm.py [--steps 20] [--threads 1]

Builds ``configs/quickstart.py`` and ``configs/timm_convnext_atto_quickstart.py`` (random init) and times one
training step of each (forward, the three heads' losses, backward, AdamW) on batch 8 of 128x128 images with
ground truth for every task, the two models interleaved in one process so that a change of load on the
machine hits both alike; prints the median after 3 warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "ResNet-18 (quickstart.py)": "configs/quickstart.py",
    "timm convnext_atto (timm_convnext_atto_quickstart.py)": "configs/timm_convnext_atto_quickstart.py",
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(ROOT))
    from mmengine.config import Config

    import multitask_vision
    from multitask_vision.registry import MODELS
    from tests.conftest import make_sample

    multitask_vision.register_all_modules()
    torch.set_num_threads(args.threads)
    models = {}
    for name, path in CONFIGS.items():
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(str(ROOT / path)).model).train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), 1e-4))
    x = torch.randn(8, 3, 128, 128)
    samples = [make_sample(("detection", "segmentation", "depth"), size=(128, 128), seed=i) for i in range(8)]
    times: dict[str, list[float]] = {n: [] for n in models}
    for step in range(3 + args.steps):
        for name, (model, opt) in models.items():
            start = time.perf_counter()
            losses = model(x, samples, mode="loss")
            loss = sum(v for k, v in losses.items() if "loss" in k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    for name, (model, _) in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {statistics.median(times[name]):.3f} s/step, {params:.2f} M parameters")


if __name__ == "__main__":
    main()
