# The shared backbone alone (e.g. for a chip that runs the heads elsewhere): no pruning, fp32 ONNX of the
# backbone's stages plus ONNX Runtime dynamic int8. No task outputs, so no metrics for the exported files.
export = dict(format="onnx", blocks=["backbone"])
quantization = dict(method="dynamic")  # ONNX Runtime
evaluation = dict(max_samples=None)
benchmark = dict(runs=30, warmup=5, threads=1)
