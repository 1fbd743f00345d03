"""Tests for deeplab_video.data.tube_targets against a loop-based numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.data import tube_targets

DIVISOR = 1000
NUM_CLASSES = 6
THINGS = (3, 4, 5)
IGNORE = 255


def _reference(panoptic: np.ndarray, max_tubes: int, stride: int) -> dict[str, np.ndarray]:
    """Slow reference: visits every strided pixel and builds the tubes by hand."""
    strided = panoptic[:, ::stride, ::stride]
    frames, height, width = strided.shape
    void = np.zeros(strided.shape, np.float32)
    semantic = np.zeros(strided.shape, np.int32)
    areas: dict[int, int] = {}
    tube_of = np.full(strided.shape, -1, np.int64)
    for t in range(frames):
        for y in range(height):
            for x in range(width):
                value = int(strided[t, y, x])
                cls, inst = value // DIVISOR, value % DIVISOR
                semantic[t, y, x] = cls
                if not 0 <= cls < NUM_CLASSES or (cls in THINGS and inst == 0):
                    void[t, y, x] = 1
                    continue
                key = value if cls in THINGS else cls * DIVISOR
                tube_of[t, y, x] = key
                areas[key] = areas.get(key, 0) + 1
    # Keep the largest; ties go to the smaller label; list in increasing label.
    ranked = sorted(areas, key=lambda key: (-areas[key], key))[:max_tubes]
    kept = sorted(ranked)
    masks = np.zeros((frames, height, width, max_tubes), np.float32)
    classes = np.zeros(max_tubes, np.int32)
    valid = np.zeros(max_tubes, np.float32)
    for slot, key in enumerate(kept):
        masks[..., slot] = tube_of == key
        classes[slot] = key // DIVISOR
        valid[slot] = 1
    return {
        common.TUBE_MASKS: masks,
        common.TUBE_CLASSES: classes,
        common.TUBE_VALID: valid,
        common.VOID_MASK: void,
        common.SEMANTIC_STRIDED: semantic,
    }


def _random_clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """Stuff (some with stray instance ids), things, crowd, ignore and an unknown class."""
    choices = np.array(
        [0, 1 * DIVISOR, 2 * DIVISOR + 7, 3 * DIVISOR + 1, 3 * DIVISOR + 2, 4 * DIVISOR + 1,
         5 * DIVISOR + 9, 3 * DIVISOR, IGNORE * DIVISOR, 9 * DIVISOR + 1]
    )  # fmt: skip
    return rng.choice(choices, size=(frames, height, width)).astype(np.int32)


def _compute(panoptic: np.ndarray, max_tubes: int, stride: int) -> dict[str, np.ndarray]:
    out = tube_targets.compute_tube_targets(
        tf.constant(panoptic),
        num_classes=NUM_CLASSES,
        thing_ids=THINGS,
        label_divisor=DIVISOR,
        max_tubes=max_tubes,
        stride=stride,
    )
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("num_frames", [1, 2, 3])
@pytest.mark.parametrize("max_tubes", [16, 3])
def test_matches_numpy_reference(num_frames, max_tubes):
    rng = np.random.default_rng(num_frames * 10 + max_tubes)
    panoptic = _random_clip(rng, num_frames, 17, 23)
    got = _compute(panoptic, max_tubes, stride=4)
    want = _reference(panoptic, max_tubes, stride=4)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got[common.TUBE_MASKS].shape == (num_frames, 5, 6, max_tubes)


def test_hand_worked_clip():
    # Two frames of 2x3; stride 1. A car (class 4, id 1) moves right; road (class 2) is stuff.
    road, car, crowd, void = 2 * DIVISOR, 4 * DIVISOR + 1, 3 * DIVISOR, IGNORE * DIVISOR
    panoptic = np.array(
        [
            [[car, road, road], [road, crowd, void]],
            [[road, car, road], [road + 5, road, void]],
        ],
        np.int32,
    )
    got = _compute(panoptic, max_tubes=4, stride=1)
    np.testing.assert_array_equal(got[common.TUBE_CLASSES], [2, 4, 0, 0])
    np.testing.assert_array_equal(got[common.TUBE_VALID], [1, 1, 0, 0])
    masks = got[common.TUBE_MASKS]
    # The road tube covers the stray-instance road pixel too; the car tube spans both frames.
    np.testing.assert_array_equal(masks[..., 0], [[[0, 1, 1], [1, 0, 0]], [[1, 0, 1], [1, 1, 0]]])
    np.testing.assert_array_equal(masks[..., 1], [[[1, 0, 0], [0, 0, 0]], [[0, 1, 0], [0, 0, 0]]])
    assert masks[..., 2:].sum() == 0
    np.testing.assert_array_equal(
        got[common.VOID_MASK], [[[0, 0, 0], [0, 1, 1]], [[0, 0, 0], [0, 0, 1]]]
    )
    np.testing.assert_array_equal(got[common.SEMANTIC_STRIDED][0], [[4, 2, 2], [2, 3, IGNORE]])


def test_stride_sampling_and_empty_clip():
    assert tube_targets.strided_size(97, 4) == 25
    assert tube_targets.strided_size(96, 4) == 24
    panoptic = np.full((2, 9, 9), IGNORE * DIVISOR, np.int32)
    got = _compute(panoptic, max_tubes=5, stride=4)
    assert got[common.TUBE_MASKS].shape == (2, 3, 3, 5)
    assert got[common.TUBE_VALID].sum() == 0
    assert got[common.VOID_MASK].all()


def test_runs_in_a_tf_function_with_unknown_size():
    @tf.function(input_signature=[tf.TensorSpec([2, None, None], tf.int32)])
    def targets(panoptic):
        return tube_targets.compute_tube_targets(
            panoptic,
            num_classes=NUM_CLASSES,
            thing_ids=THINGS,
            label_divisor=DIVISOR,
            max_tubes=8,
            stride=4,
        )

    out = targets(tf.constant(_random_clip(np.random.default_rng(0), 2, 13, 9)))
    assert out[common.TUBE_MASKS].shape == (2, 4, 3, 8)
    assert out[common.TUBE_CLASSES].shape == (8,)


def test_drops_smallest_tubes_and_breaks_ties_by_label():
    a, b, c, d = 4 * DIVISOR + 3, 4 * DIVISOR + 1, 5 * DIVISOR + 2, 1 * DIVISOR
    # Areas: a 3, b 2, c 2, d 1 pixel(s). Two slots: a, then b (ties with c, smaller label).
    panoptic = np.array([[[a, a, a, b, b, c, c, d]]], np.int32)
    got = _compute(panoptic, max_tubes=2, stride=1)
    np.testing.assert_array_equal(got[common.TUBE_CLASSES], [4, 4])
    np.testing.assert_array_equal(got[common.TUBE_MASKS][0, 0, :, 0], [0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(got[common.TUBE_MASKS][0, 0, :, 1], [1, 1, 1, 0, 0, 0, 0, 0])
