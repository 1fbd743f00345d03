"""From a dataset's segment map to our panoptic label, with instance ids fixed per video.

VIPSeg and Cityscapes-VPS store one key per segment (a raw mask value or a COCO segment
id) whose number does not fit our label divisor or uses 0 as a valid instance. We give the
thing segments of a video instance ids 1, 2, ... in order of first appearance (by frame,
then by the raster position of the segment's first pixel), so ids stay fixed over the
video and do not depend on how the source numbers its segments.
"""

from collections.abc import Callable

import numpy as np

from deeplab_video import datasets
from deeplab_video.data.converters import common


class TrackIds:
    """Instance ids 1, 2, ... of one video's thing segments, by first appearance."""

    def __init__(self, sequence_id: str, label_divisor: int):
        self._ids: dict[int, int] = {}
        self._sequence_id = sequence_id
        self._label_divisor = label_divisor

    def get(self, key: int, path: str) -> int:
        """Returns the instance id of segment `key`, a new one the first time it is seen.

        Raises:
            ConversionError: the video has more thing segments than label_divisor - 1.
        """
        if key not in self._ids:
            if len(self._ids) + 1 >= self._label_divisor:
                raise common.ConversionError(
                    f"{path}: sequence '{self._sequence_id}' has more thing instances than "
                    f"label divisor {self._label_divisor} allows"
                )
            self._ids[key] = len(self._ids) + 1
        return self._ids[key]


def class_is_thing(category: int, descriptor: datasets.DatasetDescriptor, path: str) -> bool:
    """Whether a class id is a thing class of the dataset.

    Raises:
        ConversionError: the id is not one of the dataset's classes (names the file).
    """
    if not 0 <= category < descriptor.num_classes:
        raise common.ConversionError(
            f"{path}: category id {category} is outside {descriptor.name}'s "
            f"0..{descriptor.num_classes - 1}"
        )
    return category in descriptor.thing_ids


def to_panoptic(
    segment_map: np.ndarray,
    segment_class: Callable[[int], tuple[int, bool]],
    track_ids: TrackIds,
    descriptor: datasets.DatasetDescriptor,
    void_key: int,
    path: str,
) -> np.ndarray:
    """Turns a map of segment keys into semantic * label_divisor + instance.

    Args:
        segment_map: integer [height, width] (the narrowest dtype sorts fastest), one key
            per segment.
        segment_class: segment key -> (class id, whether the segment gets an instance id);
            raises ConversionError for an unknown class.
        track_ids: the video's instance ids (updated with the new segments).
        descriptor: the dataset (label divisor, ignore label).
        void_key: the key of void pixels, which get the ignore label.
        path: the label file (for messages).

    Returns:
        int32 [height, width].
    """
    divisor = descriptor.label_divisor
    keys, first_pixel, inverse = np.unique(segment_map, return_index=True, return_inverse=True)
    labels = np.full(keys.shape, descriptor.ignore_label * divisor, np.int32)
    for index in np.argsort(first_pixel):
        key = int(keys[index])
        if key == void_key:
            continue
        category, has_instance = segment_class(key)
        instance = track_ids.get(key, path) if has_instance else 0
        labels[index] = category * divisor + instance
    return labels[inverse].reshape(segment_map.shape)
