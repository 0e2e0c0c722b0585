# The memory test's run (tests/engine/test_memory.py): a small model on 64x64 synthetic images, a few hundred
# iterations with 2 dataloader workers, recording the main process's resident memory. No validation, no plots.
_base_ = ["./tiny_quickstart.py"]

custom_imports = dict(imports=["tests.engine.probes"], allow_failed_imports=False)
custom_hooks = [dict(type="TaskCoverageHook"), dict(type="RSSProbeHook", interval=10)]

small = dict(num_train=16, num_val=8, image_size=(64, 64))
voc = dict(type="SyntheticVOCDataset", data_root="data/voc", seed=0, source_name="synthetic_voc", **small)
nyu = dict(type="SyntheticNYUDataset", data_root="data/nyu", seed=1, source_name="synthetic_nyu", **small)
train_dataloader = dict(
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        sources=[
            dict(voc, split="train", pipeline={{_base_.train_pipeline}}),
            dict(nyu, split="train", pipeline={{_base_.train_pipeline}}),
        ]
    ),
)
model = dict(
    blocks=[
        dict(name="backbone", type="MobileNetV2", inputs="img", width_mult=0.35, out_stages=("stride16", "stride32")),
        dict(name="neck", type="FPN", inputs=["backbone.stride16", "backbone.stride32"], in_channels=[32, 112],
             out_channels=16),
        dict(name="det_head", type="AnchorFreeDetHead", inputs="neck", task="detection", num_classes=4,
             in_channels=16, feat_channels=16, stacked_convs=1, strides=(16, 32), regress_ranges=((-1, 16), (16, 1e8))),
        dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=5, in_channels=[16, 16],
             channels=16),
        dict(name="depth_head", type="DepthHead", inputs="neck", task="depth", in_channels=[16, 16], channels=16),
    ]
)  # fmt: skip
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
train_cfg = dict(max_iters=200, val_interval=1000)
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1000, save_best=None, rule=None))
