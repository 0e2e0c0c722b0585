# Physical pruning (30% of channels) and ONNX Runtime static int8 (histogram calibration) without fine-tuning:
# the quickest way to a small, fast file; the report shows what the missing fine-tune costs.
pruning = dict(method="physical", amount=0.3, targets="all", round_to=8)
quantization = dict(method="static", observer="histogram", backend="onnxruntime", calib_samples=64)
export = dict(format="onnx", heads="all")
evaluation = dict(max_samples=None)
benchmark = dict(runs=50, warmup=10, threads=1)
