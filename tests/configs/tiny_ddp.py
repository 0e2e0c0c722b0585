# tiny_quickstart plus a probe hook that records, per rank, a parameter checksum and the samples seen.
_base_ = ["./tiny_quickstart.py"]

custom_imports = dict(imports=["tests.engine.ddp_probe"], allow_failed_imports=False)
custom_hooks = [dict(type="TaskCoverageHook"), dict(type="MetricsJSONHook"), dict(type="DDPProbeHook")]
train_cfg = dict(max_iters=3, val_interval=3)
