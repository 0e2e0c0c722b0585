"""What the inferencer takes from a training config besides the model: the test pipeline without annotation
loading (so a user never repeats the resize and padding by hand), and each task's class names and palette from
the metainfo of the sources that label it."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from typing import Any

from mmcv.transforms import LoadAnnotations, LoadImageFromFile, RandomResize, Resize
from mmengine.logging import print_log

from multitask_vision.registry import DATASETS, TRANSFORMS

DATALOADERS = ("test_dataloader", "val_dataloader", "train_dataloader")
_ANNOTATION_LOADER = re.compile(r"^Load\w*Annotation")


def is_annotation_loader(transform: Any) -> bool:
    """A transform that reads ground truth: mmcv's ``LoadAnnotations`` and its subclasses (mmdet's, mmseg's,
    ``LoadMultiTaskAnnotations``), or a ``Load...Annotation...`` transform outside that family (mmseg's
    ``LoadDepthAnnotation``)."""
    return isinstance(transform, LoadAnnotations) or bool(_ANNOTATION_LOADER.match(type(transform).__name__))


def is_resize(transform: Any) -> bool:
    return isinstance(transform, (Resize, RandomResize))


def dataset_sources(dataset: dict) -> list[dict]:
    """The source configs of a dataset config: a ``MultiSourceDataset``'s ``sources``, a concatenation's
    ``datasets``, a wrapper's ``dataset``, or the dataset itself."""
    for key in ("sources", "datasets"):
        if key in dataset:
            return [s for d in dataset[key] for s in dataset_sources(d)]
    if isinstance(dataset.get("dataset"), dict):
        return dataset_sources(dataset["dataset"])
    return [dataset]


def config_sources(cfg: Any) -> list[dict]:
    """The sources of the first of the test, val and train dataloaders that the config has."""
    for key in DATALOADERS:
        loader = cfg.get(key)
        if loader and isinstance(loader.get("dataset"), dict):
            return dataset_sources(loader["dataset"])
    return []


def config_test_pipeline(cfg: Any) -> list:
    """The config's test pipeline: the one its test (or val) sources share, else its top-level
    ``test_pipeline``. Raises ``ValueError`` when there is none, or when the sources' pipelines differ and no
    ``test_pipeline`` settles it."""
    for key in DATALOADERS[:2]:
        loader = cfg.get(key)
        if not (loader and isinstance(loader.get("dataset"), dict)):
            continue
        named = [
            (s.get("source_name") or s.get("type"), s["pipeline"])
            for s in dataset_sources(loader["dataset"])
            if s.get("pipeline")
        ]
        distinct = {repr(p) for _, p in named}
        if len(distinct) == 1:
            return list(named[0][1])
        if len(distinct) > 1:
            if cfg.get("test_pipeline"):
                print_log(
                    f"{key}: the sources' pipelines differ; using the config's test_pipeline", "current"
                )
                return list(cfg.test_pipeline)
            raise ValueError(
                f"{key}: sources {', '.join(str(n) for n, _ in named)} have different pipelines; give the "
                "inferencer pipeline=[...] or the config a test_pipeline"
            )
    if cfg.get("test_pipeline"):
        return list(cfg.test_pipeline)
    raise ValueError(
        "the config has no test pipeline (no test_dataloader/val_dataloader source with a pipeline)"
    )


def inference_pipeline(specs: Sequence[Any], fit_hw: tuple[int, int] | None = None) -> tuple[Any, list[Any]]:
    """``(loader, transforms)`` for images given as paths or arrays: ``specs`` (transform configs or objects)
    without their annotation loaders, the image loader replaced by mmdet's ``InferencerLoader`` with the same
    arguments (it reads a path or takes a BGR array). ``fit_hw`` (an exported file's fixed input size): when
    the pipeline has no resize of its own, images are resized to fit it, keeping their aspect ratio."""
    loader = None
    transforms: list[Any] = []
    for spec in specs:
        built = TRANSFORMS.build(copy.deepcopy(spec)) if isinstance(spec, dict) else spec
        if is_annotation_loader(built):
            continue
        if isinstance(built, LoadImageFromFile) and loader is None:
            args = {k: v for k, v in dict(spec).items() if k != "type"} if isinstance(spec, dict) else {}
            loader = TRANSFORMS.build(dict(type="mmdet.InferencerLoader", **args))
            continue
        transforms.append(built)
    if loader is None:
        raise ValueError(
            "the test pipeline has no image loader (LoadImageFromFile): nothing reads the images"
        )
    if fit_hw is not None and not any(is_resize(t) for t in transforms):
        h, w = fit_hw
        transforms.insert(0, TRANSFORMS.build(dict(type="MultiTaskResize", scale=(w, h), keep_ratio=True)))
        print_log(
            f"the model file takes {h}x{w} images and the test pipeline does not resize: images are resized "
            "to fit (aspect ratio kept) and padded",
            "current",
        )
    return loader, transforms


def lazy_sources(cfg: Any) -> list[Any]:
    """The config's sources, built without reading their data (``lazy_init``, no pipeline): what
    :func:`multitask_vision.visualization.task_styles` reads each task's class names and palette from. A
    source that cannot be built so is left out with a warning (its tasks get numbered classes)."""
    built = []
    for src in config_sources(cfg):
        try:
            built.append(DATASETS.build(dict(copy.deepcopy(src), lazy_init=True, pipeline=[])))
        except (TypeError, ValueError, KeyError, OSError) as e:
            print_log(
                f"class names of source {src.get('source_name') or src.get('type')} unknown: {e}",
                "current",
                logging.WARNING,
            )
    return built
