# No pruning: the trained model as fp32 ONNX and its ONNX Runtime static int8 quantization (QDQ, per-channel
# weights, min-max calibration on 64 training images of every source). The checkpoint, model_fp32.onnx and
# model_int8.onnx are then the same network: what benchmarks/inference.py compares (speed, and how far int8
# moves the predictions), and the files infer.py --model runs.
quantization = dict(method="static", observer="minmax", backend="onnxruntime", calib_samples=64)
export = dict(format="onnx", heads="all")
evaluation = dict(max_samples=None)
benchmark = dict(runs=50, warmup=10, threads=1)
