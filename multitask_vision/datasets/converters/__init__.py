"""Converters from the datasets' published formats to the on-disk layouts our sources read."""

from multitask_vision.datasets.converters.nyu_mat import (
    NYU13_CLASSES,
    NYU40_CLASSES,
    NYU40_TO_13,
    NYU894_TO_40,
    convert_nyu_mat,
    depth_to_millimetres,
    nyu_label_luts,
    read_nyu_splits,
)

__all__ = [
    "NYU13_CLASSES",
    "NYU40_CLASSES",
    "NYU40_TO_13",
    "NYU894_TO_40",
    "convert_nyu_mat",
    "depth_to_millimetres",
    "nyu_label_luts",
    "read_nyu_splits",
]
