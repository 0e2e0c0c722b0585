# One shared ResNet-18 + FPN trunk and three native heads (detection, segmentation, depth).
# Channel counts are checked when the model is built: a wrong in_channels names the edge.
# The blocks are named so that other configs (e.g. configs/single_task/) can reuse them.
num_det_classes = 4  # synthetic: box, ball, cone, ring
num_seg_classes = 5  # background + the 4 object classes
fpn_channels = 64

backbone_block = dict(name="backbone", type="ResNet", inputs="img", depth=18)
neck_block = dict(
    name="neck",
    type="FPN",
    inputs=["backbone.layer2", "backbone.layer3", "backbone.layer4"],
    in_channels=[128, 256, 512],
    out_channels=fpn_channels,
)
det_block = dict(
    name="det_head",
    type="AnchorFreeDetHead",
    inputs="neck",
    task="detection",
    num_classes=num_det_classes,
    in_channels=fpn_channels,
    feat_channels=64,
    stacked_convs=2,
    strides=(8, 16, 32),
    regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
)
seg_block = dict(
    name="seg_head",
    type="SegHead",
    inputs="neck",
    task="segmentation",
    num_classes=num_seg_classes,
    in_channels=[fpn_channels] * 3,
    channels=64,
)
depth_block = dict(
    name="depth_head",
    type="DepthHead",
    inputs="neck",
    task="depth",
    in_channels=[fpn_channels] * 3,
    channels=64,
    max_depth=10.0,
)

model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", pad_size_divisor=32),
    blocks=[backbone_block, neck_block, det_block, seg_block, depth_block],
    task_weighting=dict(type="FixedTaskWeighting", weights=dict(detection=1.0, segmentation=1.0, depth=1.0)),
)
