"""Tests of deeplab_video.evaluation.stq."""

import pickle

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.evaluation import stq
from tests.evaluation import reference_metrics

DIVISOR = 1000


def _grid(text: str) -> np.ndarray:
    """An int map from rows of digits separated by '/'."""
    return np.array([[int(ch) for ch in row] for row in text.split("/")], np.int64)


# DeepLab2's test_complex_example (evaluation/numpy/segmentation_and_tracking_quality_test.py):
# three 8x8 frames; classes sky 0, vegetation 1, car 2 (thing).
_GT_SEMANTIC = [
    "00000000/00000000/00020111/02222111/22222211/22222221/22222221/22222211",
    "00000000/00000000/02001100/22211110/22221111/22222111/22222111/22221111",
    "00000000/00000000/00000000/20111000/22111100/22211110/22211111/22211111",
]
_GT_INSTANCE = [
    "00000000/00000000/00020000/02222000/22222200/22222220/22222220/22222200",
    "00000000/00000000/02000000/22200000/22220000/22222000/22222000/22220000",
    "00000000/00000000/00000000/20000000/22000000/22200000/22200000/22200000",
]
_PRED_SEMANTIC = [
    "00000000/00000000/00000100/00022111/02222211/22222221/22222221/22222221",
    "00000000/00000000/00001100/02221111/22221111/22222111/22222211/22222111",
    "00000000/00000000/00001000/00111100/22211100/22211111/22221111/22221111",
]
_PRED_INSTANCE = [
    "00000000/00000000/00000000/00022000/02222100/22222110/22221110/22221110",
    "00000000/00000000/00000000/02220000/22220000/22222000/22221100/22221000",
    "00000000/00000000/00000000/00000000/22200000/22200000/22220000/22220000",
]


def _panoptic(semantic: str, instance: str) -> np.ndarray:
    return _grid(semantic) * DIVISOR + _grid(instance)


def test_deeplab2_complex_example():
    metric = stq.STQuality(3, [2], 255, DIVISOR, 256 * 256)
    for gt_s, gt_i, pr_s, pr_i in zip(
        _GT_SEMANTIC, _GT_INSTANCE, _PRED_SEMANTIC, _PRED_INSTANCE, strict=True
    ):
        metric.update_state(_panoptic(gt_s, gt_i), _panoptic(pr_s, pr_i), 1)
    result = metric.result()
    np.testing.assert_allclose(result["STQ"], 0.66841773352, atol=1e-7)
    np.testing.assert_allclose(result["AQ"], 0.55366581415, atol=1e-7)
    np.testing.assert_allclose(result["IoU"], 0.8069529580309542, atol=1e-7)
    np.testing.assert_allclose(result["STQ_per_seq"], [0.66841773352], atol=1e-7)
    np.testing.assert_allclose(result["AQ_per_seq"], [0.55366581415], atol=1e-7)
    np.testing.assert_allclose(result["IoU_per_seq"], [0.8069529580309542], atol=1e-7)
    assert result["ID_per_seq"] == [1]
    assert result["Length_per_seq"] == [3]


# DeepLab2's test_basic_examples: one row of pixels; class 0 = car (thing), 1 = sky.
# Entries are (ground truth, prediction, (STQ, AQ, IoU)); labels are class * 1000 + id.
_TRACK = [1, 1, 1, 1, 1]
_CROWD_FIRST = [0, 1, 1, 1, 1, 1]
_SKY_FIRST = [1000, 1, 1, 1, 1]
_BASIC_EXAMPLES = [
    (_TRACK, [1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),
    (_TRACK, [1, 1, 2, 2, 2], (0.72111026, 0.52, 1.0)),
    (_TRACK, [1, 2, 2, 2, 2], (0.82462113, 0.68, 1.0)),
    (_TRACK, [1, 2, 3, 4, 5], (0.447213596, 0.2, 1.0)),
    (_TRACK, [1, 2, 1, 2, 2], (0.72111026, 0.52, 1.0)),
    (_TRACK, [1000, 1, 1, 1, 1], (0.50596443, 0.64, 0.4)),
    (_CROWD_FIRST, [1, 1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),
    (_CROWD_FIRST, [2, 2, 2, 2, 1, 1], (0.72111026, 0.52, 1.0)),
    (_CROWD_FIRST, [2, 2, 1000, 1, 1, 1], (0.40824829, 0.4, 5.0 / 12.0)),
    (_SKY_FIRST, [1, 1, 1, 1, 1], (0.56568542, 0.8, 0.4)),
    (_SKY_FIRST, [2, 2, 2, 1, 1], (0.42426407, 0.45, 0.4)),
    (_SKY_FIRST, [2, 2, 1000, 1, 1], (0.3, 0.3, 0.3)),
]


@pytest.mark.parametrize("gt,pred,expected", _BASIC_EXAMPLES)
def test_deeplab2_basic_examples(gt, pred, expected):
    metric = stq.STQuality(2, [0], 255, DIVISOR, 256 * 256)
    metric.update_state(np.array([gt]), np.array([pred]), 1)
    result = metric.result()
    np.testing.assert_allclose(
        [result["STQ"], result["AQ"], result["IoU"]], expected, rtol=0, atol=1e-7
    )
    np.testing.assert_allclose(result["STQ_per_seq"], [expected[0]], atol=1e-7)
    assert result["Length_per_seq"] == [1]


def _random_sequences(seed, num_classes, things, ignore_label):
    rng = np.random.default_rng(seed)
    return {
        f"seq{s}": list(
            zip(
                *reference_metrics.random_video(
                    rng, int(rng.integers(1, 5)), 14, 19, num_classes, things, ignore_label, DIVISOR
                ),
                strict=True,
            )
        )
        for s in range(3)
    }


def _interleaved(sequences, seed):
    """(sequence, gt, pred) of all frames, sequences interleaved at random."""
    rng = np.random.default_rng(seed)
    order = [s for s, frames in sequences.items() for _ in frames]
    rng.shuffle(order)
    cursors = dict.fromkeys(sequences, 0)
    for s in order:
        gt, pred = sequences[s][cursors[s]]
        cursors[s] += 1
        yield s, gt, pred


def _assert_results_equal(ours, reference, atol=1e-9):
    assert ours["ID_per_seq"] == reference["ID_per_seq"]
    assert ours["Length_per_seq"] == reference["Length_per_seq"]
    for key in ("STQ", "AQ", "IoU", "STQ_per_seq", "AQ_per_seq", "IoU_per_seq"):
        np.testing.assert_allclose(ours[key], reference[key], rtol=0, atol=atol, err_msg=key)


# (num_classes, things, ignore_label): void above, at, and inside the class range.
_LABEL_SPACES = [(5, [2, 3], 255), (4, [1], 4), (6, [1, 4, 5], 0)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_classes,things,ignore_label", _LABEL_SPACES)
def test_random_videos_match_reference(seed, num_classes, things, ignore_label):
    sequences = _random_sequences(seed, num_classes, things, ignore_label)
    metric = stq.STQuality(num_classes, things, ignore_label, DIVISOR, 2**16 * DIVISOR)
    reference = reference_metrics.ReferenceSTQ(num_classes, things, ignore_label, DIVISOR)
    for sequence, gt, pred in _interleaved(sequences, seed):
        metric.update_state(gt, pred, sequence)
        reference.update(gt, pred, sequence)
    _assert_results_equal(metric.result(), reference.result())


def test_ids_reused_across_sequences_are_separate_tracks():
    # The same id 1 in two sequences: a perfect track in each, not one broken track.
    metric = stq.STQuality(2, [0], 255, DIVISOR, 2**16 * DIVISOR)
    metric.update_state(np.array([[1, 1000]]), np.array([[1, 1000]]), "a")
    metric.update_state(np.array([[1000, 1]]), np.array([[1000, 7]]), "b")
    result = metric.result()
    assert result["AQ"] == pytest.approx(1.0)
    np.testing.assert_allclose(result["AQ_per_seq"], [1.0, 1.0])


def test_void_prediction_adds_a_zero_iou_entry_as_deeplab2():
    metric = stq.STQuality(2, [0], 255, DIVISOR, 2**16 * DIVISOR)
    metric.update_state(
        np.array([[1000, 1000, 1000, 1000]]), np.array([[1000, 1000, 1000, 255000]])
    )
    # Sky: 3/4; the void column enters the mean with IoU 0.
    assert metric.result()["IoU"] == pytest.approx(0.375)
    np.testing.assert_allclose(metric.per_class_iou(), [np.nan, 0.75])


def _shard_metrics(sequences):
    full = stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR)
    shards = [stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR) for _ in range(2)]
    for i, (sequence, gt, pred) in enumerate(_interleaved(sequences, 0)):
        full.update_state(gt, pred, sequence)
        # Frames go to shards at random, so one sequence may be split over both.
        shards[i % 2].update_state(gt, pred, sequence)
    return full, shards


def test_merge_of_shards_equals_one_pass():
    full, shards = _shard_metrics(_random_sequences(7, 5, [2, 3], 255))
    merged = stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR)
    merged.merge_state(shards)
    ours, expected = merged.result(), full.result()
    # Sequence order follows first appearance over the shards, so compare by id.
    order = [ours["ID_per_seq"].index(s) for s in expected["ID_per_seq"]]
    assert [ours["Length_per_seq"][i] for i in order] == expected["Length_per_seq"]
    for key in ("STQ", "AQ", "IoU"):
        assert ours[key] == pytest.approx(expected[key], abs=1e-12)
    for key in ("STQ_per_seq", "AQ_per_seq", "IoU_per_seq"):
        np.testing.assert_allclose(ours[key][order], expected[key], atol=1e-12)


def test_state_round_trip_through_pickle():
    full, shards = _shard_metrics(_random_sequences(8, 5, [2, 3], 255))
    restored = [stq.STQuality.from_state(pickle.loads(pickle.dumps(s.get_state()))) for s in shards]
    restored[0].merge_state(restored[1:])
    assert restored[0].result()["STQ"] == pytest.approx(full.result()["STQ"], abs=1e-12)


def test_merge_rejects_other_arguments():
    metric = stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR)
    with pytest.raises(ValueError, match="cannot merge"):
        metric.merge_state([stq.STQuality(5, [2], 255, DIVISOR, 2**16 * DIVISOR)])


def test_tf_tensors_equal_numpy_arrays():
    sequences = _random_sequences(3, 5, [2, 3], 255)
    from_numpy = stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR)
    from_tf = stq.STQuality(5, [2, 3], 255, DIVISOR, 2**16 * DIVISOR)
    for sequence, gt, pred in _interleaved(sequences, 3):
        from_numpy.update_state(gt, pred, sequence)
        from_tf.update_state(
            tf.constant(gt, tf.int32), tf.constant(pred, tf.int32), tf.constant(sequence)
        )
    _assert_results_equal(from_tf.result(), from_numpy.result(), atol=0)


def test_reset_states_forgets_frames():
    metric = stq.STQuality(2, [0], 255, DIVISOR, 2**16 * DIVISOR)
    metric.update_state(np.array([[1, 1]]), np.array([[1, 2]]))
    metric.reset_states()
    metric.update_state(np.array([[1, 1]]), np.array([[1, 1]]))
    assert metric.result()["STQ"] == pytest.approx(1.0)
    assert metric.result()["Length_per_seq"] == [1]


def test_offset_too_small_is_rejected():
    with pytest.raises(ValueError, match="offset 1000 is too small"):
        stq.STQuality(3, [2], 255, DIVISOR, 1000)


@pytest.mark.parametrize(
    "gt,pred,error,message",
    [
        ([[1, 2]], [[1, 2, 3]], ValueError, "differ in shape"),
        ([[7000]], [[1]], ValueError, r"ground truth holds semantic classes \[7\]"),
        ([[1]], [[3000]], ValueError, r"prediction holds semantic classes \[3\]"),
        ([[1.0]], [[1]], TypeError, "integer"),
        ([[-1]], [[1]], ValueError, "negative"),
    ],
)
def test_bad_inputs_raise(gt, pred, error, message):
    metric = stq.STQuality(3, [2], 255, DIVISOR, 2**16 * DIVISOR)
    with pytest.raises(error, match=message):
        metric.update_state(np.array(gt), np.array(pred))
