# HydraNet (Nekrasov et al., "Real-Time Joint Semantic Segmentation and Depth Estimation Using Asymmetric
# Annotations", ICRA 2019): MobileNetV2 encoder -> Light-Weight RefineNet decoder with Chained Residual
# Pooling -> two small heads, segmentation and depth, trained jointly on an NYU-layout source.
#
# By default it trains on the synthetic NYU-layout source (offline). For the real NYUv2 labelled set, point
# the source at a converted copy (NYU layout: images/, depth/, label13|label40/, train.txt, val.txt):
#   --cfg-options train_dataloader.dataset.sources.0.type=NYUv2Dataset \
#                 train_dataloader.dataset.sources.0.data_root=data/nyuv2 ... (and the same for val)
_base_ = ["_base_/default_runtime.py", "_base_/schedules/adamw_iters.py"]

image_size = (128, 128)
num_seg_classes = 5  # synthetic: background + 4 object classes (NYUv2: 13 or 40)
decoder_channels = 128

model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", pad_size_divisor=32),
    blocks=[
        dict(name="encoder", type="MobileNetV2", inputs="img", width_mult=1.0,
             out_stages=("stride4", "stride8", "stride16", "stride32")),
        dict(name="decoder", type="RefineNetDecoder",
             inputs=["encoder.stride4", "encoder.stride8", "encoder.stride16", "encoder.stride32"],
             in_channels=[24, 32, 96, 320], channels=decoder_channels, crp_stages=4),
        dict(name="seg_head", type="SegHead", inputs="decoder", task="segmentation",
             num_classes=num_seg_classes, in_channels=decoder_channels, channels=64),
        dict(name="depth_head", type="DepthHead", inputs="decoder", task="depth",
             in_channels=decoder_channels, channels=64, max_depth=10.0),
    ],
)  # fmt: skip

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="MultiTaskRandomFlip", prob=0.5),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="PackMultiTaskInputs"),
]
nyu_source = dict(
    type="SyntheticNYUDataset",
    data_root="data/synthetic/nyu",
    num_train=1200,
    num_val=200,
    image_size=image_size,
    seed=1,
    source_name="nyu",
)
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="MultiSourceSampler", shuffle=True),
    batch_sampler=dict(type="MultiSourceBatchSampler", strategy="proportional"),
    dataset=dict(
        type="MultiSourceDataset", sources=[dict(nyu_source, split="train", pipeline=train_pipeline)]
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="MultiSourceDataset", sources=[dict(nyu_source, split="val", pipeline=test_pipeline)]),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type="TaskMetric", task="segmentation", metric=dict(type="mmseg.IoUMetric", iou_metrics=["mIoU"])),
    dict(type="TaskMetric", task="depth", metric=dict(type="mmseg.DepthMetric", max_depth_eval=10.0)),
]
test_evaluator = val_evaluator
