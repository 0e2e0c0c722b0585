# mmdet + mmseg blocks (FCOS detection, FCN segmentation) and a native depth head on one shared trunk,
# trained on the synthetic VOC/NYU sources. For PASCAL VOC + NYUv2 see det_seg_depth_mmlab_voc_nyu.py.
#   uv run python train.py --config configs/det_seg_depth_mmlab.py      # -> work_dirs_mmlab/latest.pth
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/synthetic_det_seg_depth.py",
    "_base_/models/mmlab_resnet18_fpn_fcos_fcn_depth.py",
    "_base_/schedules/adamw_iters.py",
]
# no Δm baselines for this model: keep the best checkpoint of each task's primary metric
default_hooks = dict(
    checkpoint=dict(
        save_best=["detection/pascal_voc/mAP", "segmentation/mIoU", "depth/abs_rel"],
        rule=["greater", "greater", "less"],
    )
)

# the origin README's work dir: its visualize and deploy commands read work_dirs_mmlab/latest.pth
work_dir = "work_dirs_mmlab"
