# Single-task baseline for HydraNet's Δm: the same MobileNetV2 + RefineNet trunk with only the depth head,
# trained with the same schedule on the same images (see hydranet_segmentation.py).
_base_ = ["../hydranet_nyu.py"]

model = dict(
    blocks=[{{_base_.encoder_block}}, {{_base_.decoder_block}}, {{_base_.depth_block}}],
    task_weighting=dict(_delete_=True, type="FixedTaskWeighting"),
)
train_dataloader = dict(dataset=dict(only_tasks=["depth"]))
val_dataloader = dict(dataset=dict(only_tasks=["depth"]))
test_dataloader = val_dataloader
val_evaluator = dict(metrics=[{{_base_.depth_metric}}])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best="depth/abs_rel", rule="less"))
