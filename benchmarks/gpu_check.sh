#!/usr/bin/env bash
# The GPU part of issue #14 in one run (~8 min on one GPU): framework vs hand-written training throughput in fp32,
# fp16 and bf16 autocast and with torch.compile'd trunks, plus the graph overhead, all timed side by side (ABBA).
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine whose venv is synced (mmcv built with CUDA ops)
#
# Builds nothing: it assumes `uv sync` was done there (TORCH_CUDA_ARCH_LIST / MAX_JOBS, see README.md) and stops at
# once if torch sees no GPU or mmcv has no CUDA ops. Writes JSON (and the log) under $OUT/gpu_check if $OUT is
# set, else under benchmarks/results/gpu_check/. Each step has its own time limit, so one that hangs (a compile)
# does not take the others with it; the whole script stays under ~8 minutes.
# Not run yet: no GPU was lent to the session that wrote it.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-benchmarks/results}/gpu_check"
mkdir -p "$DEST"
LOG="$DEST/gpu_check.log"
PY=(uv run --no-sync python)
[ -x .venv/bin/python ] && PY=(.venv/bin/python)
START=$(date +%s)

step() {  # step <seconds> <name> <command...>
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit}s, $(($(date +%s) - START))s elapsed)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | grep -v -e '^\s*$' | tail -n 40 | tee -a "$LOG"
  echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; uptime; } | tee "$LOG"
step 60 "environment" "${PY[@]}" - <<'EOF'
import torch, mmcv, mmcv.ops
assert torch.cuda.is_available(), "torch sees no GPU"
x = torch.randn(8, 4, device="cuda", requires_grad=True)
t = torch.randint(0, 4, (8,), device="cuda")
mmcv.ops.sigmoid_focal_loss(x, t, 2.0, 0.25, None, "mean").backward()  # mmcv's CUDA kernel (fp32)
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "mmcv", mmcv.__version__)
EOF

COMMON=(--device cuda --threads 4 --out "$DEST")
# the issue's reference setting: batch 16 of 512x512 (our trunks are ResNet-18, the reference's ResNet-50)
step 180 "throughput fp32/fp16/bf16 512x512 batch 16" "${PY[@]}" benchmarks/train_throughput.py "${COMMON[@]}" \
  --configs quickstart mmlab --variants fp32 fp16 bf16 --size 512 --batch 16 --rounds 12 --name gpu_throughput_512
step 60 "throughput hand-written with torch's default AdamW (fp32)" "${PY[@]}" benchmarks/train_throughput.py \
  "${COMMON[@]}" --configs quickstart mmlab --variants fp32 --size 512 --batch 16 --rounds 12 \
  --hand-optimizer default --name gpu_throughput_512_default_adamw
step 140 "throughput torch.compile 512x512 batch 16" "${PY[@]}" benchmarks/train_throughput.py "${COMMON[@]}" \
  --configs quickstart mmlab --variants compile --size 512 --batch 16 --rounds 12 --warmup 4 \
  --name gpu_throughput_512_compile
step 60 "graph overhead (config size and 64x64)" "${PY[@]}" benchmarks/graph_overhead.py "${COMMON[@]}" \
  --rounds 16 --name gpu_graph_overhead
echo "done in $(($(date +%s) - START)) s; results in $DEST" | tee -a "$LOG"
ls -l "$DEST" | tee -a "$LOG"
