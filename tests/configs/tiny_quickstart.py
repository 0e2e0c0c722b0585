# The quickstart, shrunk for tests: 64x64 images, a few samples, a few iterations, no worker processes.
# Relative data_root: tests run it with the temporary directory as the working directory.
_base_ = ["../../configs/quickstart.py"]

image_size = (64, 64)
tiny = dict(num_train=16, num_val=8, image_size=image_size)
voc = dict(type="SyntheticVOCDataset", data_root="data/voc", seed=0, source_name="synthetic_voc", **tiny)
nyu = dict(type="SyntheticNYUDataset", data_root="data/nyu", seed=1, source_name="synthetic_nyu", **tiny)

train_dataloader = dict(
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
    batch_size=4,
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

train_cfg = dict(max_iters=4, val_interval=4)
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=5))
