"""Tests for deeplab_video.post_processing.object_features."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.post_processing import object_features

pytestmark = pytest.mark.usefixtures("native_and_graph_ops")


def _reference(instance_map, max_objects):
    """Per-id loop over full-clip masks (the straightforward version)."""
    _, height, width = instance_map.shape
    boxes = np.zeros([max_objects, 4])
    areas = np.zeros([max_objects], np.int64)
    for row in range(max_objects):
        _, ys, xs = np.nonzero(instance_map == row + 1)
        areas[row] = ys.size
        if ys.size:
            boxes[row] = [
                xs.min() / width,
                ys.min() / height,
                (xs.max() + 1) / width,
                (ys.max() + 1) / height,
            ]
    return boxes, areas


@pytest.mark.parametrize("num_frames", [1, 3])
def test_boxes_and_areas_match_per_id_loop(num_frames):
    rng = np.random.default_rng(num_frames)
    instance_map = np.zeros([num_frames, 13, 17], np.int32)
    for object_id in range(1, 6):  # id 6 stays absent
        frame = rng.integers(num_frames)
        y, x = rng.integers(0, 10), rng.integers(0, 14)
        instance_map[frame, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = object_id
    boxes, areas = object_features.object_boxes(instance_map, max_objects=7)
    expected_boxes, expected_areas = _reference(instance_map, 7)
    np.testing.assert_allclose(boxes.numpy(), expected_boxes, atol=1e-6)
    np.testing.assert_array_equal(areas.numpy(), expected_areas)


def test_box_is_union_over_frames_on_pixel_edges():
    instance_map = np.zeros([2, 4, 8], np.int32)
    instance_map[0, 0, 0] = 1
    instance_map[1, 3, 7] = 1
    instance_map[1, 1:3, 2:4] = 2
    boxes, areas = object_features.object_boxes(instance_map, max_objects=2)
    np.testing.assert_allclose(boxes.numpy(), [[0, 0, 1, 1], [0.25, 0.25, 0.5, 0.75]])
    np.testing.assert_array_equal(areas.numpy(), [2, 4])


def test_rejects_ids_above_capacity():
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_objects"):
        object_features.object_boxes(np.full([1, 2, 2], 3, np.int32), max_objects=2)


def test_runs_in_tf_function():
    instance_map = np.zeros([2, 5, 6], np.int32)
    instance_map[1, 2:4, 1:5] = 1
    run = tf.function(lambda m: object_features.object_boxes(m, max_objects=1))
    boxes, areas = run(tf.constant(instance_map))
    np.testing.assert_allclose(boxes.numpy(), [[1 / 6, 0.4, 5 / 6, 0.8]], atol=1e-6)
    assert int(areas[0]) == 8
