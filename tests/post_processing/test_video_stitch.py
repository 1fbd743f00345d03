"""Tests for deeplab_video.post_processing.video_stitch."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.post_processing import video_stitch
from deeplab_video.protos import evaluator_pb2

pytestmark = pytest.mark.usefixtures("native_and_graph_ops")

DIVISOR = 1000
CAR, PERSON, ROAD = 13, 11, 0


def _frame(objects, shape=(6, 8)):
    """Panoptic frame of road with (class, local id, rows, cols) objects pasted on it."""
    frame = np.full(shape, ROAD * DIVISOR, np.int32)
    for cls, local_id, rows, cols in objects:
        frame[rows, cols] = cls * DIVISOR + local_id
    return frame


def _stitch(previous, previous_ids, previous_classes, current, current_classes, **kwargs):
    class_check = kwargs.pop("class_check", True)
    options = evaluator_pb2.StitchingOptions(**kwargs)
    return video_stitch.stitch(
        previous,
        np.asarray(previous_ids, np.int32),
        np.asarray(previous_classes, np.int32),
        current,
        np.asarray(current_classes, np.int32),
        sum(c >= 0 for c in current_classes),
        DIVISOR,
        options,
        class_check=class_check,
    ).numpy()


# Previous clip: car (local 1 -> video id 7) at rows 0-1, person (local 2 -> id 4) at
# rows 3-5. Current clip's first frame: same objects, local ids swapped, slightly moved.
PREVIOUS = _frame([(CAR, 1, slice(0, 2), slice(0, 4)), (PERSON, 2, slice(3, 6), slice(4, 6))])
CURRENT = _frame([(PERSON, 1, slice(3, 6), slice(5, 7)), (CAR, 2, slice(0, 2), slice(1, 5))])


def test_ids_are_carried_over():
    stitched = _stitch(PREVIOUS, [7, 4, -1], [CAR, PERSON, -1], CURRENT, [PERSON, CAR, -1])
    np.testing.assert_array_equal(stitched, [4, 7, -1])


def test_class_mismatch_is_not_stitched():
    stitched = _stitch(PREVIOUS, [7, 4, -1], [CAR, PERSON, -1], CURRENT, [PERSON, PERSON, -1])
    np.testing.assert_array_equal(stitched, [4, -1, -1])
    stitched = _stitch(
        PREVIOUS, [7, 4, -1], [CAR, PERSON, -1], CURRENT, [PERSON, PERSON, -1], class_check=False
    )
    np.testing.assert_array_equal(stitched, [4, 7, -1])


def test_new_object_is_unplaced():
    current = _frame([(CAR, 1, slice(0, 2), slice(0, 4)), (CAR, 2, slice(4, 6), slice(0, 2))])
    stitched = _stitch(PREVIOUS, [7, 4], [CAR, PERSON], current, [CAR, CAR])
    np.testing.assert_array_equal(stitched, [7, -1])


def test_overlap_threshold_and_mutual_best():
    # Two current cars split the previous car: the larger share (IoU 6/8) wins, the
    # other (IoU 2/8) is unplaced even though the previous car is its best partner.
    current = _frame([(CAR, 1, slice(0, 2), slice(0, 3)), (CAR, 2, slice(0, 2), slice(3, 4))])
    stitched = _stitch(PREVIOUS, [7, 4], [CAR, PERSON], current, [CAR, CAR])
    np.testing.assert_array_equal(stitched, [7, -1])
    stitched = _stitch(PREVIOUS, [7, 4], [CAR, PERSON], current, [CAR, CAR], overlap_threshold=0.8)
    np.testing.assert_array_equal(stitched, [-1, -1])


@pytest.mark.parametrize("measure", ["iou", "dice"])
def test_overlap_matrix_matches_masks(measure):
    overlap = video_stitch.overlap_matrix(PREVIOUS, CURRENT, 2, 2, DIVISOR, measure).numpy()
    expected = np.zeros([2, 2])
    for p in range(2):
        for c in range(2):
            a = PREVIOUS % DIVISOR == p + 1
            b = CURRENT % DIVISOR == c + 1
            inter, total = (a & b).sum(), a.sum() + b.sum()
            expected[p, c] = 2 * inter / total if measure == "dice" else inter / (total - inter)
    np.testing.assert_allclose(overlap, expected, atol=1e-6)
    assert overlap[0, 1] == pytest.approx(6 / 10 if measure == "iou" else 12 / 16)


def test_rejects_ids_beyond_object_rows():
    with pytest.raises(tf.errors.InvalidArgumentError, match="object rows"):
        video_stitch.overlap_matrix(PREVIOUS, CURRENT, 1, 2, DIVISOR)
    with pytest.raises(ValueError, match="overlap_measure"):
        video_stitch.overlap_matrix(PREVIOUS, CURRENT, 2, 2, DIVISOR, "giou")


def test_relabel_keeps_stuff_and_void():
    clip = np.stack([CURRENT, CURRENT])
    clip[1, 0, 0] = 255 * DIVISOR
    relabelled = video_stitch.relabel(clip, np.array([4, 12, -1], np.int32), DIVISOR).numpy()
    expected = clip.copy()
    expected[clip == PERSON * DIVISOR + 1] = PERSON * DIVISOR + 4
    expected[clip == CAR * DIVISOR + 2] = CAR * DIVISOR + 12
    np.testing.assert_array_equal(relabelled, expected)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label_divisor"):
        video_stitch.relabel(clip, np.array([4, DIVISOR], np.int32), DIVISOR)


def test_stitch_in_tf_function():
    options = evaluator_pb2.StitchingOptions()

    @tf.function
    def run(previous, current):
        return video_stitch.stitch(
            previous,
            tf.constant([7, 4, -1]),
            tf.constant([CAR, PERSON, -1]),
            current,
            tf.constant([PERSON, CAR, -1]),
            tf.constant(2),
            DIVISOR,
            options,
        )

    np.testing.assert_array_equal(run(PREVIOUS, CURRENT).numpy(), [4, 7, -1])
