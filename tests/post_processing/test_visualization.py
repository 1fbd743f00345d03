"""Tests for deeplab_video.post_processing.visualization."""

import numpy as np

from deeplab_video import datasets
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


def test_an_ids_colour_does_not_depend_on_the_ids_converted_with_it():
    alone = np.concatenate([visualization.track_colors(np.array([i])) for i in range(150)])
    for count in (1, 5, 33, 64, 100, 150):
        np.testing.assert_array_equal(visualization.track_colors(np.arange(count)), alone[:count])


def _random_panoptic(rng, height, width):
    semantic = rng.choice([0, 1, 2, 3, 4, 5, SYNTHETIC.ignore_label], size=(height, width))
    instance = rng.integers(0, 40, size=(height, width)) * (rng.uniform(size=(height, width)) < 0.7)
    return (semantic * DIVISOR + instance).astype(np.int32)


def test_colorize_matches_a_pixel_by_pixel_reference():
    rng = np.random.default_rng(0)
    panoptic = _random_panoptic(rng, 23, 37)
    expected = np.zeros(panoptic.shape + (3,), np.uint8)
    for (y, x), label in np.ndenumerate(panoptic):
        semantic, instance = divmod(int(label), DIVISOR)
        if semantic in SYNTHETIC.thing_ids and instance > 0:
            expected[y, x] = visualization.track_colors(np.array([instance]))[0]
        elif semantic < SYNTHETIC.num_classes:
            expected[y, x] = SYNTHETIC.colormap[semantic]
    np.testing.assert_array_equal(visualization.colorize_panoptic(panoptic, SYNTHETIC), expected)


def test_overlay_blend_is_within_one_of_the_exact_blend():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (19, 29, 3), dtype=np.uint8)
    panoptic = (rng.choice([0, 1, 2, SYNTHETIC.ignore_label], size=(19, 29)) * DIVISOR).astype(
        np.int32
    )  # Stuff and void only: no track labels are drawn.
    colors = visualization.colorize_panoptic(panoptic, SYNTHETIC).astype(np.float64)
    alpha = visualization.OVERLAY_ALPHA
    exact = frame * (1 - alpha) + colors * alpha
    void = np.broadcast_to((panoptic // DIVISOR == SYNTHETIC.ignore_label)[..., None], frame.shape)
    out = visualization.overlay(frame, panoptic, SYNTHETIC)
    np.testing.assert_array_equal(out[void], frame[void])
    assert np.abs(out[~void] - exact[~void]).max() <= 1.0
    assert not np.array_equal(out[~void], frame[~void])


def test_thing_statistics_measure_every_track_as_its_pixels_say():
    rng = np.random.default_rng(0)
    divisor = SYNTHETIC.label_divisor
    thing, stuff = SYNTHETIC.thing_ids[0], SYNTHETIC.stuff_ids[0]
    values = [stuff * divisor, thing * divisor, thing * divisor + 3, thing * divisor + 11]
    values.append(SYNTHETIC.ignore_label * divisor)
    panoptic = np.asarray(values, np.int32)[rng.integers(0, len(values), (6, 9))]
    panoptic = np.repeat(np.repeat(panoptic, 5, axis=0), 7, axis=1)  # 30 x 63 blocks
    things = visualization.thing_statistics(panoptic, SYNTHETIC)
    # Thing class with instance 0, stuff and void are not tracks.
    np.testing.assert_array_equal(things.labels, [thing * divisor + 3, thing * divisor + 11])
    for label, area, centre, box in zip(*things, strict=True):
        ys, xs = np.nonzero(panoptic == label)
        assert area == len(xs)
        np.testing.assert_array_equal(centre, [xs.mean(), ys.mean()])
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_negative_values_are_coloured_as_class_zero():
    panoptic = _panoptic()
    panoptic[0, :3] = -5
    image = visualization.colorize_panoptic(panoptic, SYNTHETIC)
    np.testing.assert_array_equal(image[0, :3], np.repeat(SYNTHETIC.colormap_array()[:1], 3, 0))
