# A tiny quantization-aware training config: the tiny deployment model with fake quantization (torchao PT2E,
# x86 int8) from iteration 1 of 3, converted to int8 at the end (<work_dir>/qat_int8.pt2).
_base_ = ["tiny_train.py"]
custom_hooks = [
    dict(type="TaskCoverageHook", strict=True),
    dict(type="QATHook", start_iter=1, save_name="qat_int8.pt2"),
]
train_cfg = dict(max_iters=3, val_interval=3)
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=3)]
default_hooks = dict(checkpoint=dict(interval=3, max_keep_ckpts=1))
