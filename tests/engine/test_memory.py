"""Memory under load: the main process's resident memory stops growing once training is warm.

SLOW BY DESIGN (≈40 s on 2 cores): 200 iterations of a small model with 2 dataloader workers through train.py.
A leak that keeps something per iteration (a batch, a loss with its graph, an ever-growing history) adds its
size every step and shows here; allocator noise after warm-up stays within a few MB. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WARM_UP = 50  # iterations: workers started, allocator pools and optimizer state built
MAX_GROWTH_MB = 8.0  # over the 150 iterations after warm-up: catches a leak of ≈ 55 kB per iteration


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
def test_resident_memory_stops_growing_after_warm_up(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "tests/configs/tiny_memory.py"),
           "--work-dir", "wd"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = dict(json.loads((tmp_path / "wd" / "rss.json").read_text()))  # {iteration: resident MB}
    assert max(samples) == 200
    warm = samples[WARM_UP]
    growth = max(v for it, v in samples.items() if it >= WARM_UP) - warm
    assert growth < MAX_GROWTH_MB, f"resident memory grew {growth:.1f} MB after warm-up: {samples}"
