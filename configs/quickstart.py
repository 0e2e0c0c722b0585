# Quickstart: everything offline. Two synthetic sources (generated on first use under data/synthetic),
# a ResNet-18 + FPN trunk shared by detection, segmentation and depth heads, homogeneous batches by source,
# ~1000 iterations on a 2-core CPU. Run:  uv run train.py --config configs/quickstart.py
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/synthetic_det_seg_depth.py",
    "_base_/models/resnet18_fpn_det_seg_depth.py",
    "_base_/schedules/adamw_iters.py",
]
