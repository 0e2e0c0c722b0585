# HydraNet on the real NYUv2 labelled set (795 train / 654 test, 40-class labels, depth in metres), as in
# Nekrasov et al. 2019. Get the data with `bash scripts/download_data.sh --only nyu` (-> data/nyuv2).
# Sized for one GPU; not trained on this project's CPU machines.
# Splits: the converter writes NYUv2's official split as train.txt (795) and val.txt (the 654-image *test*
# split). Model selection (validation, best checkpoints) must not see the test images, so 95 of the 795
# training images are held out for validation (seeded: the same 95 every run) and training uses the other 700;
# the test split is only for test_dataloader (train.py --eval-only).
_base_ = ["./hydranet_nyu.py"]

num_seg_classes = 40
model = dict(
    blocks=[
        {{_base_.encoder_block}},
        {{_base_.decoder_block}},
        dict(
            name="seg_head",
            type="SegHead",
            inputs="decoder",
            task="segmentation",
            num_classes=num_seg_classes,
            in_channels=128,
            channels=64,
        ),
        {{_base_.depth_block}},
    ]
)

train_pipeline = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="MultiTaskRandomCrop", crop_size=(448, 576)),
    dict(type="MultiTaskRandomFlip", prob=0.5),
    dict(type="MultiTaskPhotoMetricDistortion"),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="LoadMultiTaskImage"),
    dict(type="LoadMultiTaskAnnotations"),
    dict(type="PackMultiTaskInputs"),
]
nyu = dict(type="NYUv2Dataset", data_root="data/nyuv2", label_dir="label40", source_name="nyuv2")
nyu_holdout = dict(num=95, seed=0)  # of the 795 images of train.txt
train_dataloader = dict(
    batch_size=6,
    dataset=dict(
        sources=[dict(nyu, split="train", holdout=dict(nyu_holdout, part="rest"), pipeline=train_pipeline)]
    ),
)
val_dataloader = dict(
    batch_size=4,
    dataset=dict(
        sources=[dict(nyu, split="train", holdout=dict(nyu_holdout, part="held"), pipeline=test_pipeline)]
    ),
)
test_dataloader = dict(  # NYUv2's official 654-image test split
    batch_size=4, dataset=dict(sources=[dict(nyu, split="val", pipeline=test_pipeline)])
)

max_iters = 20000
train_cfg = dict(max_iters=max_iters, val_interval=2000)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=500, end=max_iters, eta_min=1e-6),
]
default_hooks = dict(checkpoint=dict(interval=2000), logger=dict(interval=50))
