# Physical pruning, then quantization-aware fine-tuning (PT2E fake quant from the first iteration, converted to
# int8 at the end): the int8 PT2E model and its ONNX export. The fp32 export is the pruned model before QAT.
pruning = dict(method="physical", amount=0.3, targets="all", round_to=8)
finetune = dict(iters=600, lr=1e-3, log_interval=100)
quantization = dict(method="qat")  # torchao PT2E x86, moving-average min-max fake quantization
export = dict(format="onnx", heads="all")
evaluation = dict(max_samples=None)
benchmark = dict(runs=50, warmup=10, threads=1)
