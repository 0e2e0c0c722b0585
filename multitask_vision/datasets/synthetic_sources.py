"""Synthetic sources: generate a dataset once with :func:`ensure_synthetic_data`, then read it from disk.

The loaders are the real ones (:class:`VOCMultitaskDataset`, :class:`NYUv2Dataset`): what a model trains on
went through the same files, parsers and conventions as the real datasets. Both sources share one segmentation
label space, :data:`SYNTHETIC_SEG_CLASSES`, so one segmentation head can serve both. With ``lazy_init=True`` a
source generates its data at its first read, not when it is built (its metainfo needs no files).
"""

from __future__ import annotations

import functools
import os.path as osp
from collections.abc import Callable, Sequence
from typing import Any

from multitask_vision.datasets.base import voc_colormap
from multitask_vision.datasets.nyu import NYUv2Dataset
from multitask_vision.datasets.synthetic import ensure_synthetic_data
from multitask_vision.datasets.synthetic_scene import SYNTHETIC_CLASSES, SYNTHETIC_SEG_CLASSES
from multitask_vision.datasets.voc import VOCMultitaskDataset
from multitask_vision.registry import DATASETS


def _generated_root(source: Any, generate: Callable[[], str], data_root: str, kwargs: dict) -> str:
    """Generate the data now, or, with ``lazy_init=True``, when the source is first read
    (:func:`_generate_pending` in ``full_init``): reading a lazy source's metainfo (e.g. its class names, as the
    inferencer does) writes nothing."""
    if kwargs.get("lazy_init", False):
        source._pending_generation = generate
        return osp.abspath(data_root)
    source._pending_generation = None
    return generate()


def _generate_pending(source: Any) -> None:
    if getattr(source, "_pending_generation", None) is not None:
        source._pending_generation()
        source._pending_generation = None


@DATASETS.register_module()
class SyntheticVOCDataset(VOCMultitaskDataset):
    """Synthetic scenes in the VOC layout: detection for every image, segmentation for ``seg_fraction`` of them.

    Args:
        data_root: where the dataset lives (generated there when missing or made with other parameters).
        split: ``'train'`` or ``'val'``.
        num_train, num_val: images per split. image_size: ``(height, width)``. seed: generator seed.
        seg_fraction, min_objects, max_objects, void_boundary, jpeg_quality: generator options (see
            :func:`~multitask_vision.datasets.synthetic.ensure_synthetic_data`).
        **kwargs: :class:`VOCMultitaskDataset` arguments (``tasks``, ``image_set``, ``metainfo``, ``pipeline``...).

    ``metainfo`` defaults to ``classes=SYNTHETIC_CLASSES`` (detection) and ``seg_classes=SYNTHETIC_SEG_CLASSES``
    (mask value 0 background, i + 1 = class i).
    """

    METAINFO = dict(
        classes=SYNTHETIC_CLASSES,
        palette=voc_colormap(len(SYNTHETIC_SEG_CLASSES))[1:],
        seg_classes=SYNTHETIC_SEG_CLASSES,
        seg_palette=voc_colormap(len(SYNTHETIC_SEG_CLASSES)),
    )

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        num_train: int = 200,
        num_val: int = 50,
        image_size: Sequence[int] = (128, 128),
        seed: int = 0,
        seg_fraction: float = 0.7,
        min_objects: int = 1,
        max_objects: int = 6,
        void_boundary: bool = True,
        jpeg_quality: int = 90,
        **kwargs: Any,
    ) -> None:
        generate = functools.partial(
            ensure_synthetic_data,
            data_root,
            "voc",
            num_train,
            num_val,
            image_size,
            seed,
            seg_fraction=seg_fraction,
            min_objects=min_objects,
            max_objects=max_objects,
            void_boundary=void_boundary,
            jpeg_quality=jpeg_quality,
        )
        super().__init__(_generated_root(self, generate, data_root, kwargs), split, **kwargs)

    def full_init(self) -> None:
        _generate_pending(self)
        super().full_init()


@DATASETS.register_module()
class SyntheticNYUDataset(NYUv2Dataset):
    """Synthetic scenes in the NYU layout: depth (with Kinect-like holes) and segmentation for every image.

    Args:
        data_root, split, num_train, num_val, image_size, seed: as :class:`SyntheticVOCDataset`.
        min_objects, max_objects, depth_holes: generator options; label_dir: where the label maps are written
            and read.
        **kwargs: :class:`NYUv2Dataset` arguments (``tasks``, ``metainfo``, ``pipeline``...).

    ``metainfo`` defaults to ``classes = seg_classes = SYNTHETIC_SEG_CLASSES`` (the label maps' values).
    """

    METAINFO = dict(
        classes=SYNTHETIC_SEG_CLASSES,
        palette=voc_colormap(len(SYNTHETIC_SEG_CLASSES)),
        seg_classes=SYNTHETIC_SEG_CLASSES,
        seg_palette=voc_colormap(len(SYNTHETIC_SEG_CLASSES)),
    )

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        num_train: int = 200,
        num_val: int = 50,
        image_size: Sequence[int] = (128, 128),
        seed: int = 0,
        min_objects: int = 1,
        max_objects: int = 6,
        depth_holes: bool = True,
        label_dir: str = "labels",
        **kwargs: Any,
    ) -> None:
        generate = functools.partial(
            ensure_synthetic_data,
            data_root,
            "nyu",
            num_train,
            num_val,
            image_size,
            seed,
            min_objects=min_objects,
            max_objects=max_objects,
            depth_holes=depth_holes,
            label_dir=label_dir,
        )
        root = _generated_root(self, generate, data_root, kwargs)
        super().__init__(root, split, label_dir=label_dir, **kwargs)

    def full_init(self) -> None:
        _generate_pending(self)
        super().full_init()
