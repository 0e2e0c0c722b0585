# Deploy the quickstart model for an embedded x86 CPU: remove 30% of the channels (Torch-Pruning, trunk, neck
# and every head), recover with a short fine-tune, quantize to int8 (PT2E for PyTorch, ONNX Runtime QDQ for the
# ONNX file), export ONNX of all heads, check parity and per-task metrics.
#   uv run deploy.py --config configs/quickstart.py --checkpoint work_dirs/quickstart/iter_1300.pth \
#                    --deploy-config configs/deploy.py --output deploy_out/quickstart
pruning = dict(method="physical", amount=0.3, targets="all", round_to=8, norm=2)
finetune = dict(iters=600, lr=1e-3, log_interval=100)
quantization = dict(method="static", observer="minmax", backend=["x86", "onnxruntime"], calib_samples=64)
export = dict(format="onnx", heads="all", opset=18, dynamic_batch=True)
evaluation = dict(max_samples=None, parity_atol=1e-4)
benchmark = dict(runs=50, warmup=10, threads=1)
