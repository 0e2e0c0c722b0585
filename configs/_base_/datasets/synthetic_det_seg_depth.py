# Two synthetic sources, generated on first use under data/synthetic (a few seconds):
#   'synthetic_voc': VOC layout, labels detection + segmentation (30% of images detection-only, like VOC)
#   'synthetic_nyu': NYU layout, labels depth + segmentation
# Batches are homogeneous by source; the strategy picks the source of every batch.
image_size = (128, 128)
data_root = "data/synthetic"

train_pipeline = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="MultiTaskRandomFlip", prob=0.5),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="PackMultiTaskInputs"),
]

voc_source = dict(
    type="SyntheticVOCDataset",
    data_root=data_root + "/voc",
    num_train=1200,
    num_val=200,
    image_size=image_size,
    seed=0,
    source_name="synthetic_voc",
)
nyu_source = dict(
    type="SyntheticNYUDataset",
    data_root=data_root + "/nyu",
    num_train=1200,
    num_val=200,
    image_size=image_size,
    seed=1,
    source_name="synthetic_nyu",
)
# per split, named so that other configs can pick sources ({{_base_.nyu_train}})
voc_train = dict(voc_source, split="train", pipeline=train_pipeline)
nyu_train = dict(nyu_source, split="train", pipeline=train_pipeline)
voc_val = dict(voc_source, split="val", pipeline=test_pipeline)
nyu_val = dict(nyu_source, split="val", pipeline=test_pipeline)

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="MultiSourceSampler", shuffle=True),
    batch_sampler=dict(type="MultiSourceBatchSampler", strategy="round_robin"),
    dataset=dict(
        type="MultiSourceDataset",
        sources=[voc_train, nyu_train],
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="MultiSourceDataset",
        sources=[voc_val, nyu_val],
    ),
)
test_dataloader = val_dataloader

# Each metric sees only the samples labelled for its task; `primary` is its headline number (the deploy report's
# columns when there are no baselines). Δm (multitask/delta_m) compares with single-task baselines:
# configs/quickstart.py sets the numbers measured by configs/single_task/quickstart_*.py.
detection_metric = dict(
    type="TaskMetric",
    task="detection",
    metric=dict(type="mmdet.VOCMetric", iou_thrs=[0.5], eval_mode="area"),
    primary="pascal_voc/mAP",
)
segmentation_metric = dict(
    type="TaskMetric",
    task="segmentation",
    metric=dict(type="mmseg.IoUMetric", iou_metrics=["mIoU"]),
    primary="mIoU",
)
depth_metric = dict(
    type="TaskMetric",
    task="depth",
    metric=dict(type="mmseg.DepthMetric", max_depth_eval=10.0),
    primary="abs_rel",
)
val_evaluator = dict(
    type="MultiTaskEvaluator",
    metrics=[detection_metric, segmentation_metric, depth_metric],
    baselines={},  # {metric name: single-task value}; empty = no Δm
)
test_evaluator = val_evaluator
