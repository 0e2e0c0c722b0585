# Quickstart: everything offline. Two synthetic sources (generated on first use under data/synthetic),
# a narrow ResNet-18 + FPN trunk shared by detection, segmentation and depth heads, homogeneous batches by
# source, 1300 iterations: under 5 minutes on a 2-core CPU. Run:  uv run train.py --config configs/quickstart.py
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/synthetic_det_seg_depth.py",
    "_base_/models/resnet18_fpn_det_seg_depth.py",
    "_base_/schedules/adamw_iters.py",
]

# A first run in under 5 minutes (issue #14, benchmarks/README.md section 5). Against the full-width ResNet-18 at
# 1000 iterations (configs/quickstart_resnet18.py), measured on a 2-core AMD EPYC: the trunk at 3/8 width
# (base_channels=24: stages 24/48/96/192 wide, 1.6 M parameters instead of 11.2, about a seventh of the
# multiply-adds) with twice the peak LR (4e-3) and 1300 iterations ends with better metrics in less than half
# the time. Iterations counted for more than width: at 3/8 width 1200 iterations gave mAP 0.667 and 1300 0.684;
# at half width (base_channels=32, a 1.25x slower step) 1200 iterations gave 0.66-0.68.
# Validation once, at the end; data loading in the main process (0 workers: on 2 cores a worker process takes
# CPU from the model; 200 iterations took 36-41 s with 0 workers against 43-44 s with 1, in turn).
backbone_block = dict(name="backbone", type="ResNet", inputs="img", depth=18, base_channels=24)
neck_block = dict(
    name="neck",
    type="FPN",
    inputs=["backbone.layer2", "backbone.layer3", "backbone.layer4"],
    in_channels=[48, 96, 192],
    out_channels={{_base_.fpn_channels}},
)
optim_wrapper = dict(optimizer=dict(lr=4e-3))
max_iters = 1300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
train_dataloader = dict(num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader

# Task weighting: learned uncertainty weights (Kendall et al. 2018), the best of the sampling x weighting ablation
# (benchmarks/ablation.py, README "When sharing a trunk pays", run with the full-width ResNet-18 trunk of
# configs/quickstart_resnet18.py, before the trunk above): at 500 iterations it gave the highest Δm on the
# validation half (-19.8 % against -24.6 % for fixed weights) and again on the held-out half (-16.0 % / -19.0 %),
# mostly through segmentation (+4.7 mIoU). round_robin stays the sampling: the other strategies were worse.
# At that config's full 1000 iterations the two weightings tie (Δm -8.46 % learned, -8.47 % fixed: segmentation
# +1.4 mIoU, detection -0.018 mAP); on HydraNet, where every image labels both tasks, it is worth +8.8 points.
model = dict(
    blocks=[backbone_block, neck_block, {{_base_.det_block}}, {{_base_.seg_block}}, {{_base_.depth_block}}],
    task_weighting=dict(_delete_=True, type="UncertaintyWeighting"),
)

# Δm baselines: the same trunk with one head, trained with this schedule by configs/single_task/quickstart_*.py
# (1300 iterations, 2-core AMD EPYC, seed 0, 2026-11-29) and validated on the same images. Re-measure them if
# you change the model, data or schedule: Δm is only meaningful against baselines trained the same way.
val_evaluator = dict(
    baselines={
        "detection/pascal_voc/mAP": 0.7841,
        "segmentation/mIoU": 76.56,
        "depth/abs_rel": 0.0428,
    }
)
test_evaluator = val_evaluator
# model selection: best_multitask_delta_m_iter_<N>.pth is the checkpoint with the best Δm so far
default_hooks = dict(checkpoint=dict(save_best="multitask/delta_m", rule="greater"))
