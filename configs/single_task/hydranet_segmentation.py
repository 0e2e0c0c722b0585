# Single-task baseline for HydraNet's Δm: the same MobileNetV2 + RefineNet trunk with only the segmentation
# head, trained with the same schedule on the same images (every image labels both tasks, so an equal
# iteration budget is also an equal number of labelled samples). benchmarks/ablation.py --config hydranet
# trains it beside configs/hydranet_nyu.py.
_base_ = ["../hydranet_nyu.py"]

model = dict(
    blocks=[{{_base_.encoder_block}}, {{_base_.decoder_block}}, {{_base_.seg_block}}],
    task_weighting=dict(_delete_=True, type="FixedTaskWeighting"),
)
train_dataloader = dict(dataset=dict(only_tasks=["segmentation"]))
val_dataloader = dict(dataset=dict(only_tasks=["segmentation"]))
test_dataloader = val_dataloader
val_evaluator = dict(metrics=[{{_base_.segmentation_metric}}])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best="segmentation/mIoU", rule="greater"))
