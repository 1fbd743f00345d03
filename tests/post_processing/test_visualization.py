"""Tests for deeplab_video.post_processing.visualization."""

import numpy as np

from deeplab_video.data import datasets
from deeplab_video.post_processing import visualization

SYNTHETIC = datasets.SYNTHETIC
DIVISOR = SYNTHETIC.label_divisor


def _panoptic() -> np.ndarray:
    panoptic = np.full((20, 30), 0 * DIVISOR, np.int32)  # sky (stuff)
    panoptic[10:, :] = 2 * DIVISOR  # road (stuff)
    panoptic[2:8, 2:10] = 3 * DIVISOR + 7  # disc, track 7
    panoptic[12:18, 15:25] = 3 * DIVISOR + 9  # disc, track 9
    panoptic[0, 0] = SYNTHETIC.ignore_label * DIVISOR
    return panoptic


def test_colorize_uses_class_colours_for_stuff_and_track_colours_for_things():
    image = visualization.colorize_panoptic(_panoptic(), SYNTHETIC)
    assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
    np.testing.assert_array_equal(image[5, 20], SYNTHETIC.colormap[0])
    np.testing.assert_array_equal(image[19, 0], SYNTHETIC.colormap[2])
    np.testing.assert_array_equal(image[0, 0], (0, 0, 0))
    colour_7, colour_9 = image[4, 4], image[14, 20]
    assert not np.array_equal(colour_7, colour_9)
    np.testing.assert_array_equal(colour_7, visualization.track_colors(np.array([7]))[0])


def test_track_colours_are_stable_and_distinct():
    colours = visualization.track_colors(np.arange(1, 11))
    assert len({tuple(c) for c in colours}) == 10
    np.testing.assert_array_equal(colours[3], visualization.track_colors(np.array([4]))[0])


def test_overlay_blends_and_keeps_void_pixels():
    frame = np.full((20, 30, 3), 100, np.uint8)
    out = visualization.overlay(frame, _panoptic(), SYNTHETIC)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], frame[0, 0])
    assert not np.array_equal(out[19, 0], frame[19, 0])
