# tiny_quickstart where a backbone weight turns nan after iteration 3 (tests/engine/test_reliability.py), as an
# optimizer step that overflows would leave it; checkpoints every 2 iterations, only the newest kept.
_base_ = ["./tiny_quickstart.py"]

custom_imports = dict(imports=["tests.engine.probes"], allow_failed_imports=False)
custom_hooks = [dict(type="TaskCoverageHook"), dict(type="NaNWeightHook", at_iter=3)]
train_cfg = dict(max_iters=6, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=1))
