# Global L1 unstructured pruning (torch.nn.utils.prune, made permanent), fp32 ONNX export. Zeroes 30% of the
# weights: the file and the latency do not shrink on dense kernels (the report shows it).
pruning = dict(method="unstructured", amount=0.3, targets="all")
export = dict(format="onnx", heads="all")
evaluation = dict(max_samples=None)
benchmark = dict(runs=30, warmup=5, threads=1)
