# Single-task baseline for the quickstart's Δm: the same trunk with only the depth head, trained with the
# same schedule on the sources that label depth (only_tasks narrows them), validated on the same images.
_base_ = ["../quickstart.py"]

model = dict(
    blocks=[{{_base_.backbone_block}}, {{_base_.neck_block}}, {{_base_.depth_block}}],
    task_weighting=dict(_delete_=True, type="FixedTaskWeighting"),
)
train_dataloader = dict(dataset=dict(only_tasks=["depth"]))
val_dataloader = dict(dataset=dict(only_tasks=["depth"]))
test_dataloader = val_dataloader
val_evaluator = dict(metrics=[{{_base_.depth_metric}}], baselines=None)
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best="depth/abs_rel", rule="less"))  # no Δm without baselines
