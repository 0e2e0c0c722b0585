# The det_seg_depth_mmlab model on real data: PASCAL VOC 2012 (detection + 21-class segmentation) and the
# NYU Depth v2 labelled set (depth + 40-class segmentation). The two segmentation label spaces differ, so
# they are two tasks with a head each (seg_voc, seg_nyu); each source maps its masks to its own task.
# Get the data with scripts/download_data.sh (VOC -> data/VOCdevkit/VOC2012, NYUv2 -> data/nyuv2).
# Not trained on this project's CPU machines; sized for one GPU.
# Splits: NYUv2's val.txt (written by the converter) is its official 654-image *test* split: it only serves
# test_dataloader. Validation (model selection, best checkpoints) uses 95 of the 795 training images, held out
# (seeded: the same 95 every run); training uses the other 700. VOC 2012 has no public test labels: its val
# split serves both.
_base_ = ["./det_seg_depth_mmlab.py"]
work_dir = "work_dirs/det_seg_depth_mmlab_voc_nyu"  # not the base config's work_dirs_mmlab

image_scale = (512, 512)
fpn_channels = 64

model = dict(
    blocks=[
        {{_base_.backbone_block}},
        {{_base_.neck_block}},
        dict(name="det_head", type="mmdet.FCOSHead", inputs="neck", task="detection", num_classes=20,
             in_channels=fpn_channels, feat_channels=64, stacked_convs=2, strides=[8, 16, 32],
             regress_ranges=((-1, 64), (64, 128), (128, 1e8)), norm_cfg=dict(type="GN", num_groups=32),
             center_sampling=True, norm_on_bbox=True, centerness_on_reg=True,
             test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.6),
                           max_per_img=100)),
        dict(name="seg_voc_head", type="mmseg.FCNHead", inputs="backbone", task="seg_voc", in_channels=128,
             in_index=1, channels=64, num_convs=2, concat_input=True, num_classes=21, align_corners=False,
             norm_cfg=dict(type="BN", requires_grad=True),
             loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),
        dict(name="seg_nyu_head", type="mmseg.FCNHead", inputs="backbone", task="seg_nyu", in_channels=128,
             in_index=1, channels=64, num_convs=2, concat_input=True, num_classes=40, align_corners=False,
             norm_cfg=dict(type="BN", requires_grad=True),
             loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),
        {{_base_.depth_block}},
    ]
)  # fmt: skip

train_pipeline = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="MultiTaskResize", scale=image_scale, keep_ratio=True),
    dict(type="MultiTaskRandomFlip", prob=0.5),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [  # annotations loaded after the resize: metrics compare at the original resolution
    dict(type="LoadMultiTaskImage"),
    dict(type="MultiTaskResize", scale=image_scale, keep_ratio=True),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="PackMultiTaskInputs"),
]
voc = dict(type="VOCMultitaskDataset", data_root="data/VOCdevkit/VOC2012", source_name="voc",
           tasks=dict(detection="instances", seg_voc="sem_seg"))  # fmt: skip
nyu = dict(type="NYUv2Dataset", data_root="data/nyuv2", label_dir="label40", source_name="nyu",
           tasks=dict(depth="depth", seg_nyu="sem_seg"))  # fmt: skip
nyu_holdout = dict(num=95, seed=0)  # of the 795 images of train.txt

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    batch_sampler=dict(
        _delete_=True, type="MultiSourceBatchSampler", strategy="temperature", temperature=2.0
    ),
    dataset=dict(
        sources=[
            dict(voc, split="train", pipeline=train_pipeline),
            dict(nyu, split="train", holdout=dict(nyu_holdout, part="rest"), pipeline=train_pipeline),
        ]
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(
        sources=[
            dict(voc, split="val", pipeline=test_pipeline),
            dict(nyu, split="train", holdout=dict(nyu_holdout, part="held"), pipeline=test_pipeline),
        ]
    ),
)
test_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(
        sources=[
            dict(voc, split="val", pipeline=test_pipeline),
            dict(nyu, split="val", pipeline=test_pipeline),  # NYUv2's official test split
        ]
    ),
)
val_evaluator = [
    dict(type="TaskMetric", task="detection", metric=dict(type="mmdet.VOCMetric", iou_thrs=[0.5], eval_mode="11points")),
    dict(type="TaskMetric", task="seg_voc", metric=dict(type="mmseg.IoUMetric", iou_metrics=["mIoU"])),
    dict(type="TaskMetric", task="seg_nyu", metric=dict(type="mmseg.IoUMetric", iou_metrics=["mIoU"])),
    dict(type="TaskMetric", task="depth", metric=dict(type="mmseg.DepthMetric", min_depth_eval=1e-3, max_depth_eval=10.0)),
]  # fmt: skip
test_evaluator = val_evaluator

max_iters = 40000
train_cfg = dict(max_iters=max_iters, val_interval=4000)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=1000, end=max_iters, eta_min=1e-6),
]
optim_wrapper = dict(optimizer=dict(lr=2e-4))
default_hooks = dict(
    checkpoint=dict(
        interval=4000,
        save_best=["detection/pascal_voc/mAP", "seg_voc/mIoU", "seg_nyu/mIoU", "depth/abs_rel"],
        rule=["greater", "greater", "greater", "less"],
    ),
    logger=dict(interval=50),
)
