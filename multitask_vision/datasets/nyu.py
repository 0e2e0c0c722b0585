"""NYU-Depth-v2-layout source labelled for depth and semantic segmentation.

On-disk layout (written by the NYUv2 ``.mat`` converter and by
:func:`~multitask_vision.datasets.synthetic.write_nyu_sample`)::

    root/
      images/<id>.png        RGB, 8 bit (``img_suffix`` may be ``.jpg``)
      depth/<id>.png         uint16 single channel, millimetres; 0 = invalid (Kinect holes)
      labels/<id>.png        uint8 single channel: class index 0..C-1 into ``metainfo['classes']``, 255 = unlabelled
      label13/<id>.png       optional alternative label maps (e.g. NYUv2's 13- and 40-class maps), same encoding,
      label40/<id>.png       chosen with ``label_dir``
      train.txt, val.txt     ids, one a line

A converter from NYUv2's 1-based label maps (0 = unknown) writes ``label - 1`` and maps 0 to 255. Depth in
metres is ``png / depth_scale`` (1000 for millimetres). A sample is labelled for a task when its file for that
task exists (``depth/<id>.png``, ``<label_dir>/<id>.png``); a sample with none of them is an error (a missing
annotation), as is a missing image.
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Mapping
from typing import Any

from mmengine.logging import print_log

from multitask_vision.datasets.base import (
    MultiTaskSource,
    complete_metainfo,
    list_dir_names,
    read_image_size,
    voc_colormap,
)
from multitask_vision.registry import DATASETS
from multitask_vision.utils.errors import DataError, UserError

# NYUv2's 13-class map (Couprie et al. 2013), in label order 1..13 (stored here as 0..12)
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip

# entry i = 40-class id (1..40) of raw NYUv2 class i + 1 (classMapping40.mat ``mapClass``; sources above)  # Gupta et al. 2013 (label40/)

NYU13_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)  # fmt: skip


@DATASETS.register_module(
    name=["NYUv2Dataset", "NYUDepthDataset"]
)  # NYUDepthDataset: the origin README's name
class NYUv2Dataset(MultiTaskSource):
    """NYUv2 (or any folder in the layout above) as a depth + segmentation source.

    Args:
        data_root: the dataset folder.
        split: id list ``<split>.txt`` in ``data_root``.
        tasks: task name -> kind, kinds ``'depth'`` and ``'sem_seg'``; default
            ``{'depth': 'depth', 'segmentation': 'sem_seg'}``.
        label_dir: folder of the label maps (``labels``, ``label13``, ``label40``...).
        metainfo: ``classes`` (the label map's classes; also ``seg_classes``), ``palette``. Default: the NYUv2
            40-class names for ``label_dir='label40'``, else the 13-class names.
        depth_scale: stored depth value per metre (1000 for millimetre PNGs).
        img_dir, depth_dir, img_suffix: folder / suffix of the images and depth maps.
    """

    ANNOTATION_KINDS = ("depth", "sem_seg")
    DEFAULT_TASKS = {"depth": "depth", "segmentation": "sem_seg"}
    METAINFO = dict(
        classes=NYU13_CLASSES,
        palette=voc_colormap(len(NYU13_CLASSES) + 1)[1:],
        seg_classes=NYU13_CLASSES,
        seg_palette=voc_colormap(len(NYU13_CLASSES) + 1)[1:],
    )

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        tasks: Mapping[str, str] | None = None,
        label_dir: str = "labels",
        metainfo: Mapping | None = None,
        depth_scale: float = 1000.0,
        source_name: str | None = None,
        skip_bad: bool = False,
        img_dir: str = "images",
        depth_dir: str = "depth",
        img_suffix: str = ".png",
        **kwargs: Any,
    ) -> None:
        for key in ("ann_file", "data_prefix"):
            if key in kwargs:
                raise UserError(
                    f"{type(self).__name__}: {key!r} is derived from data_root/split; do not pass it"
                )
        if depth_scale <= 0:
            raise UserError(f"{type(self).__name__}: depth_scale must be > 0, got {depth_scale}")
        self.split = split
        self.label_dir = label_dir
        self.depth_scale = float(depth_scale)
        self.img_suffix = img_suffix
        super().__init__(
            tasks=tasks,
            source_name=source_name,
            skip_bad=skip_bad,
            ann_file=f"{split}.txt",
            data_root=data_root,
            data_prefix=dict(img_path=img_dir, depth_map_path=depth_dir, seg_map_path=label_dir),
            metainfo=complete_metainfo(
                dict(classes=NYU40_CLASSES) if metainfo is None and label_dir == "label40" else metainfo,
                seg_has_background=False,
            ),
            **kwargs,
        )

    def _prepare_listing(self) -> None:
        kinds = self.kinds
        self._depth_files = (
            list_dir_names(self.data_prefix["depth_map_path"]) if "depth" in kinds else frozenset()
        )
        self._label_files = (
            list_dir_names(self.data_prefix["seg_map_path"]) if "sem_seg" in kinds else frozenset()
        )
        self._missing = {"depth": 0, "sem_seg": 0}

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()
        for kind, n in self._missing.items():
            if n and kind in self.kinds:
                folder = self.data_prefix["depth_map_path" if kind == "depth" else "seg_map_path"]
                print_log(
                    f"{self.source_name}: {n} samples have no file in {folder}: not labelled for {kind}",
                    "current",
                )
        return data_list

    def parse_sample(self, img_id: str) -> dict:
        img_path = osp.join(self.data_prefix["img_path"], img_id + self.img_suffix)
        if not osp.isfile(img_path):
            raise DataError(f"missing image {img_path} (listed in {self.ann_file})")
        width, height = read_image_size(img_path)
        info = self._base_info(img_id, img_path, height, width)
        name = img_id + ".png"
        present = {
            kind
            for kind, files in (("depth", self._depth_files), ("sem_seg", self._label_files))
            if kind in self.kinds and name in files
        }
        if not present:
            expected = [
                osp.join(self.data_prefix["depth_map_path" if k == "depth" else "seg_map_path"], name)
                for k in sorted(self.kinds)
            ]
            raise DataError(f"missing annotation for {img_id!r}: none of {expected} exists")
        for kind in self.kinds - present:
            self._missing[kind] += 1
        if "depth" in present:
            info["depth_map_path"] = osp.join(self.data_prefix["depth_map_path"], name)
            info["depth_scale"] = self.depth_scale
        if "sem_seg" in present:
            info["seg_map_path"] = osp.join(self.data_prefix["seg_map_path"], name)
            info["reduce_zero_label"] = False
        info["tasks"] = self.tasks_for(present)
        return info
