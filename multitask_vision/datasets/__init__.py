"""Datasets: sources (VOC, NYUv2, synthetic), multi-source mixing, samplers and task-aware transforms."""

from multitask_vision.datasets import nyu, synthetic, synthetic_sources, transforms, voc  # noqa: F401
from multitask_vision.datasets.multi_source import MultiSourceDataset
from multitask_vision.datasets.samplers import MultiSourceBatchSampler, MultiSourceSampler

__all__ = ["MultiSourceBatchSampler", "MultiSourceDataset", "MultiSourceSampler"]
