# The base model of the quickstarts (full-width ResNet-18 + FPN; native detection, segmentation and depth
# heads) on the same synthetic sources, with a short schedule: 300 iterations, validated once at the end.
# A first run that checks the set-up, as the README this project grew from starts with it:
#   uv run python train.py --config configs/det_seg_depth_quick.py     # -> work_dirs/det_seg_depth_quick/
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/synthetic_det_seg_depth.py",
    "_base_/models/resnet18_fpn_det_seg_depth.py",
    "_base_/schedules/adamw_iters.py",
]

max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
# no Δm baselines at this budget: keep the best checkpoint of each task's primary metric (one validation here)
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(
        interval=max_iters,
        save_best=["detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"],
        rule=["greater", "greater", "less"],
    ),
)
