# Iteration-based AdamW schedule with linear warm-up and cosine decay.
max_iters = 1000
val_interval = 500

train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

optim_wrapper = dict(
    type="OptimWrapper",
    # fused=True: torch's one-kernel AdamW (CPU and CUDA); on the 2-core AMD EPYC the optimizer step of the
    # quickstart's ResNet-18 took 16 ms instead of 105 ms with the default per-tensor loop (benchmarks/README.md)
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
