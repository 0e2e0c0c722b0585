# Single-task baseline for the quickstart's Δm: the same trunk with only the segmentation head, trained with the
# same schedule on the sources that label segmentation (only_tasks narrows them), validated on the same images.
_base_ = ["../quickstart.py"]

model = dict(
    blocks=[{{_base_.backbone_block}}, {{_base_.neck_block}}, {{_base_.seg_block}}],
    task_weighting=dict(_delete_=True, type="FixedTaskWeighting"),
)
train_dataloader = dict(dataset=dict(only_tasks=["segmentation"]))
val_dataloader = dict(dataset=dict(only_tasks=["segmentation"]))
test_dataloader = val_dataloader
val_evaluator = dict(metrics=[{{_base_.segmentation_metric}}], baselines=None)
test_evaluator = val_evaluator
default_hooks = dict(
    checkpoint=dict(save_best="segmentation/mIoU", rule="greater")
)  # no Δm without baselines
