# The quickstart as it was before its faster first run (issue #14): a full-width ResNet-18 trunk (11.2 M
# parameters), AdamW at 2e-3, 1000 iterations validated at 500 and 1000, two loader worker processes. Kept to
# reproduce the README's earlier numbers and as the before of benchmarks/first_run.py; the quickstart itself
# (3/8-width trunk, 1300 iterations) ends with better metrics in well under half the time on a 2-core CPU.
#   uv run train.py --config configs/quickstart_resnet18.py      # -> work_dirs/quickstart_resnet18/
_base_ = ["quickstart.py"]

backbone_block = dict(name="backbone", type="ResNet", inputs="img", depth=18, base_channels=64)
neck_block = dict(
    name="neck",
    type="FPN",
    inputs=["backbone.layer2", "backbone.layer3", "backbone.layer4"],
    in_channels=[128, 256, 512],
    out_channels={{_base_.fpn_channels}},
)
model = dict(
    blocks=[backbone_block, neck_block, {{_base_.det_block}}, {{_base_.seg_block}}, {{_base_.depth_block}}]
)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
max_iters = 1000
train_cfg = dict(max_iters=max_iters, val_interval=500)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
train_dataloader = dict(num_workers=2, persistent_workers=True)
val_dataloader = dict(num_workers=2, persistent_workers=True)
test_dataloader = val_dataloader
# Δm baselines: the same trunk and schedule with one head (configs/single_task/quickstart_*.py as they were,
# 2-core AMD EPYC, seed 0, 2026-11-29)
val_evaluator = dict(
    baselines={
        "detection/pascal_voc/mAP": 0.7958,
        "segmentation/mIoU": 77.56,
        "depth/abs_rel": 0.0423,
    }
)
test_evaluator = val_evaluator
