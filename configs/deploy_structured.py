# Structured L2 channel masks (torch.nn.utils.prune.ln_structured, made permanent) on the trunk and neck only,
# TorchScript export. Channels are zeroed, not removed: shapes, MACs and latency stay.
pruning = dict(method="structured", amount=0.3, targets=["backbone", "neck"], norm=2)
export = dict(format="torchscript", heads="all")
evaluation = dict(max_samples=None)
benchmark = dict(runs=30, warmup=5, threads=1)
