"""Inference on your own images, folders and videos, from a checkpoint or an exported ONNX file."""

from multitask_vision.apis.inferencer import ImagePrediction, InferenceStats, MultiTaskInferencer
from multitask_vision.apis.results import CONVERTERS, register_converter

__all__ = ["CONVERTERS", "ImagePrediction", "InferenceStats", "MultiTaskInferencer", "register_converter"]
