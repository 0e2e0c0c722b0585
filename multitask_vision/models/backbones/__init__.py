"""Native backbones (torchvision trunks that publish their outputs' channels and strides)."""

from multitask_vision.models.backbones.mobilenet_v2 import MobileNetV2
from multitask_vision.models.backbones.resnet import ResNet

__all__ = ["MobileNetV2", "ResNet"]
