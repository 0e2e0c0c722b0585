"""Pascal-VOC-layout source labelled for detection and (for some images) semantic segmentation.

On-disk layout (the real ``VOCdevkit/VOC2012`` and :func:`~multitask_vision.datasets.synthetic.write_voc_sample`)::

    root/
      JPEGImages/<id>.jpg
      Annotations/<id>.xml                 VOC XML: size, objects with 1-based inclusive ``bndbox``
      SegmentationClass/<id>.png           palette PNG: 0 background, i+1 = class i, 255 void (only some ids)
      ImageSets/Main/{train,val}.txt       ids, one a line
      ImageSets/Segmentation/{train,val}.txt

An image is labelled for segmentation only when its ``SegmentationClass`` PNG exists; otherwise its
``tasks`` omit the segmentation task and it carries no ``seg_map_path`` (never an empty mask).
"""

from __future__ import annotations

import logging
import os.path as osp
import xml.etree.ElementTree as ET
from collections import Counter
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

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _text(node: ET.Element, tag: str, xml_path: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(f"corrupt VOC annotation {xml_path}: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, xml_path: str) -> float:
    text = _text(node, tag, xml_path)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"corrupt VOC annotation {xml_path}: <{tag}> is {text!r}, not a number") from None


@DATASETS.register_module()
class VOCMultitaskDataset(MultiTaskSource):
    """Pascal VOC (or any VOC-layout folder) as a detection + segmentation source.

    Args:
        data_root: the ``VOC2012``-like folder.
        split: name of the id list ``ImageSets/<image_set>/<split>.txt`` (``train``, ``val``, ``trainval``...).
        tasks: task name -> kind, kinds ``'instances'`` and ``'sem_seg'``; default
            ``{'detection': 'instances', 'segmentation': 'sem_seg'}``.
        image_set: ``'Main'`` (every image; some have masks) or ``'Segmentation'`` (images with masks).
        metainfo: ``classes`` (detection classes; objects of other classes are dropped), ``palette``,
            ``seg_classes`` (mask values; default ``('background',) + classes``), ``seg_palette``.
        img_dir, ann_dir, seg_dir, img_suffix, seg_suffix: folder names / suffixes inside ``data_root``.

    Boxes: VOC stores 1-based inclusive pixel coordinates; ``bbox`` is ``xml value - 1`` (mmdet's
    convention), ``difficult`` objects get ``ignore_flag=1``. ``height``/``width`` come from the XML
    ``<size>`` (from the image header when missing or zero). A box reaching outside the image is clipped to it;
    one left with no area (zero width or height, inverted, or wholly outside) is dropped: both are counted and
    logged once per split with the first file.
    """

    ANNOTATION_KINDS = ("instances", "sem_seg")
    DEFAULT_TASKS = {"detection": "instances", "segmentation": "sem_seg"}
    FILTER_KEYS = ("min_size", "filter_empty_gt")
    METAINFO = dict(
        classes=VOC_CLASSES,
        palette=voc_colormap(21)[1:],
        seg_classes=("background",) + VOC_CLASSES,
        seg_palette=voc_colormap(21),
    )

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        tasks: Mapping[str, str] | None = None,
        image_set: str = "Main",
        metainfo: Mapping | None = None,
        source_name: str | None = None,
        skip_bad: bool = False,
        img_dir: str = "JPEGImages",
        ann_dir: str = "Annotations",
        seg_dir: str = "SegmentationClass",
        img_suffix: str = ".jpg",
        seg_suffix: str = ".png",
        **kwargs: Any,
    ) -> None:
        for key in ("ann_file", "data_prefix"):
            if key in kwargs:
                raise UserError(
                    f"{type(self).__name__}: {key!r} is derived from data_root/split; do not pass it"
                )
        self.split = split
        self.image_set = image_set
        self.img_suffix = img_suffix
        self.seg_suffix = seg_suffix
        self._dropped_names: Counter[str] = Counter()
        self.box_fixes: Counter[str] = Counter()  # boxes "clipped" to the image / "dropped" (no area)
        self._box_example: dict[str, str] = {}
        super().__init__(
            tasks=tasks,
            source_name=source_name,
            skip_bad=skip_bad,
            ann_file=osp.join("ImageSets", image_set, f"{split}.txt"),
            data_root=data_root,
            data_prefix=dict(img_path=img_dir, ann_path=ann_dir, seg_map_path=seg_dir),
            metainfo=complete_metainfo(metainfo, seg_has_background=True),
            **kwargs,
        )

    def _prepare_listing(self) -> None:
        self._seg_files = (
            list_dir_names(self.data_prefix["seg_map_path"]) if "sem_seg" in self.kinds else frozenset()
        )
        self._cat2label = {name: i for i, name in enumerate(self._metainfo["classes"])}
        self._dropped_names = Counter()
        self.box_fixes = Counter()
        self._box_example = {}

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()
        if self._dropped_names:
            print_log(
                f"{self.source_name}: dropped {sum(self._dropped_names.values())} objects of classes not in "
                f"metainfo['classes']: {dict(self._dropped_names)}",
                "current",
            )
        for fix, what in (
            ("clipped", "reaching outside their image, clipped"),
            ("dropped", "with no area, dropped"),
        ):
            if self.box_fixes[fix]:
                print_log(
                    f"{self.source_name}: {self.box_fixes[fix]} boxes {what} (first: {self._box_example[fix]})",
                    "current",
                    logging.WARNING,
                )
        return data_list

    def parse_sample(self, img_id: str) -> dict:
        img_path = osp.join(self.data_prefix["img_path"], img_id + self.img_suffix)
        xml_path = osp.join(self.data_prefix["ann_path"], img_id + ".xml")
        if not osp.isfile(xml_path):
            raise DataError(f"missing VOC annotation {xml_path} (listed in {self.ann_file})")
        if not osp.isfile(img_path):
            raise DataError(f"missing image {img_path} (listed in {self.ann_file})")
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            raise DataError(f"corrupt VOC annotation {xml_path}: {err}") from None
        if root.tag != "annotation":
            raise DataError(
                f"corrupt VOC annotation {xml_path}: root element is <{root.tag}>, not <annotation>"
            )
        size = root.find("size")
        width = height = 0
        if size is not None:
            width, height = int(_number(size, "width", xml_path)), int(_number(size, "height", xml_path))
        if width <= 0 or height <= 0:
            width, height = read_image_size(img_path)
        info = self._base_info(img_id, img_path, height, width)
        kinds = {"instances"}
        if "instances" in self.kinds:
            info["instances"] = self._parse_objects(root, xml_path, width, height)
        seg_name = img_id + self.seg_suffix
        if seg_name in self._seg_files:
            kinds.add("sem_seg")
            info["seg_map_path"] = osp.join(self.data_prefix["seg_map_path"], seg_name)
            info["reduce_zero_label"] = False
        info["tasks"] = self.tasks_for(kinds)
        return info

    def _parse_objects(self, root: ET.Element, xml_path: str, width: int, height: int) -> list[dict]:
        instances = []
        for obj in root.findall("object"):
            name = _text(obj, "name", xml_path)
            label = self._cat2label.get(name)
            if label is None:
                self._dropped_names[name] += 1
                continue
            box = obj.find("bndbox")
            if box is None:
                raise DataError(f"corrupt VOC annotation {xml_path}: object {name!r} has no <bndbox>")
            raw = [_number(box, k, xml_path) - 1.0 for k in ("xmin", "ymin", "xmax", "ymax")]
            x1, x2 = (min(max(v, 0.0), float(width)) for v in raw[0::2])
            y1, y2 = (min(max(v, 0.0), float(height)) for v in raw[1::2])
            fix = "dropped" if x2 <= x1 or y2 <= y1 else "clipped" if [x1, y1, x2, y2] != raw else None
            if fix is not None:
                self.box_fixes[fix] += 1
                self._box_example.setdefault(fix, f"{xml_path} object {name!r} {raw}")
                if fix == "dropped":
                    continue
            flag = obj.find("difficult")
            is_difficult = (
                flag is not None
                and bool((flag.text or "").strip())
                and _number(obj, "difficult", xml_path) != 0
            )
            instances.append(
                dict(bbox=[x1, y1, x2, y2], bbox_label=label, ignore_flag=1 if is_difficult else 0)
            )
        return instances
