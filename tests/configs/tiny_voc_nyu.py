# configs/det_seg_depth_mmlab_voc_nyu.py on tiny synthetic data in the VOC and NYU layouts, at their real image
# sizes (VOC's 333x500 resizes to 341x512: images and dense ground truth are padded to 352x512 in a batch).
# Relative data_root: tests run it with the temporary directory as the working directory.
_base_ = ["../../configs/det_seg_depth_mmlab_voc_nyu.py"]

tiny = dict(num_train=4, num_val=2)
voc = dict(type="SyntheticVOCDataset", data_root="data/voc", image_size=(333, 500), source_name="voc",
           tasks=dict(detection="instances", seg_voc="sem_seg"), seg_fraction=0.5, **tiny)  # fmt: skip
nyu = dict(type="SyntheticNYUDataset", data_root="data/nyu", image_size=(240, 320), label_dir="label40",
           source_name="nyu", tasks=dict(depth="depth", seg_nyu="sem_seg"), **tiny)  # fmt: skip
train_dataloader = dict(
    batch_sampler=dict(_delete_=True, type="MultiSourceBatchSampler", strategy="round_robin"),  # both sources
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        sources=[
            dict(voc, split="train", pipeline={{_base_.train_pipeline}}),
            dict(nyu, split="train", pipeline={{_base_.train_pipeline}}),
        ]
    ),
)
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        sources=[
            dict(voc, split="val", pipeline={{_base_.test_pipeline}}),
            dict(nyu, split="val", pipeline={{_base_.test_pipeline}}),
        ]
    ),
)
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
