# The tiny quickstart (64x64 synthetic data, a few samples) with a smaller graph for the deployment tests:
# ResNet-18 up to layer3, a 2-level FPN of 32 channels, the three native heads. Relative data_root: tests run
# it with a temporary directory as the working directory.
_base_ = ["../configs/tiny_quickstart.py"]

# base_channels=64 (torchvision's ResNet-18): the quickstart's 3/8 width would merge into this dict otherwise
backbone_block = dict(name="backbone", type="ResNet", inputs="img", depth=18, out_stages=("layer2", "layer3"),
                      base_channels=64)  # fmt: skip
neck_block = dict(name="neck", type="FPN", inputs=["backbone.layer2", "backbone.layer3"], in_channels=[128, 256],
                  out_channels=32)  # fmt: skip
det_block = dict(name="det_head", type="AnchorFreeDetHead", inputs="neck", task="detection", num_classes=4,
                 in_channels=32, feat_channels=32, stacked_convs=1, strides=(8, 16),
                 regress_ranges=((-1, 32), (32, 1e8)))  # fmt: skip
model = dict(
    blocks=[
        backbone_block,
        neck_block,
        det_block,
        dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=5,
             in_channels=[32, 32], channels=16),
        dict(name="depth_head", type="DepthHead", inputs="neck", task="depth", in_channels=[32, 32], channels=16,
             max_depth=10.0),
    ],
)  # fmt: skip
