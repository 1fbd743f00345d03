"""Tests for deeplab_video.data.converters.segments on hand-worked segment maps."""

import numpy as np
import pytest

from deeplab_video import datasets
from deeplab_video.data.converters import common, segments

DESCRIPTOR = datasets.CITYSCAPES_VPS  # 19 classes, things 11..18, divisor 1000, void 255


def _classes(key: int) -> tuple[int, bool]:
    """Keys >= 1000 are car (13) instances, smaller keys the stuff class of that id."""
    if key >= 1000:
        return 13, True
    return key, False


def test_to_panoptic_orders_instances_by_first_pixel():
    segment_map = np.array(
        [
            [255, 0, 0, 5000],
            [7000, 7000, 0, 5000],
            [2, 2, 255, 9000],
        ],
        np.int64,
    )
    track_ids = segments.TrackIds("0001", DESCRIPTOR.label_divisor)
    panoptic = segments.to_panoptic(segment_map, _classes, track_ids, DESCRIPTOR, 255, "f.png")
    expected = np.array(
        [
            [255000, 0, 0, 13001],  # 5000 first seen at (0, 3)
            [13002, 13002, 0, 13001],  # 7000 at (1, 0)
            [2000, 2000, 255000, 13003],
        ],
        np.int32,
    )
    assert panoptic.dtype == np.int32
    np.testing.assert_array_equal(panoptic, expected)
    # The next frame keeps the ids and numbers a new segment after them.
    later = np.array([[9000, 1234, 5000, 0]], np.int64)
    panoptic = segments.to_panoptic(later, _classes, track_ids, DESCRIPTOR, 255, "g.png")
    np.testing.assert_array_equal(panoptic, [[13003, 13004, 13001, 0]])


def test_track_ids_overflow():
    track_ids = segments.TrackIds("v", label_divisor=3)
    assert [track_ids.get(k, "a.png") for k in (10, 20, 10)] == [1, 2, 1]
    with pytest.raises(common.ConversionError, match="b.png: sequence 'v' has more thing"):
        track_ids.get(30, "b.png")


def test_class_is_thing():
    assert segments.class_is_thing(11, DESCRIPTOR, "x.png")
    assert not segments.class_is_thing(10, DESCRIPTOR, "x.png")
    for bad in (-1, 19):
        with pytest.raises(common.ConversionError, match=f"x.png: category id {bad} is outside"):
            segments.class_is_thing(bad, DESCRIPTOR, "x.png")
