"""Tests of deeplab_video.evaluation.pq (image panoptic quality)."""

import pickle

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.evaluation import pq
from tests.evaluation import reference_metrics

DIVISOR = 1000
VOID = 255 * DIVISOR
# Classes: 0 = stuff, 1 and 2 = things.
NUM_CLASSES, THINGS = 3, [1, 2]


def _pq_of(gt, pred):
    metric = pq.PanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR)
    metric.update_state(np.array([gt]), np.array([pred]))
    return metric


@pytest.mark.parametrize(
    "gt,pred,expected_pq",
    [
        # Perfect prediction.
        ([0, 0, 1001, 1001, 1002, 2001], [0, 0, 1001, 1001, 1002, 2001], 1.0),
        # Thing IoU 3/4, stuff IoU 4/5.
        ([0, 0, 0, 0, 1001, 1001, 1001, 1001], [0, 0, 0, 0, 0, 1001, 1001, 1001], 0.775),
        # A prediction inside a crowd region (instance 0) of its class is no false positive.
        ([1000, 1000, 1000, 0, 0, 0], [1002, 1002, 1002, 0, 0, 0], 1.0),
        # A prediction on void is no false positive.
        ([VOID, VOID, VOID, 0, 0, 0], [1001, 1001, 1001, 0, 0, 0], 1.0),
        # Exactly half on void is a false positive: stuff IoU 2/3, thing PQ 0.
        ([VOID, 0, 0, 0], [1001, 1001, 0, 0], 1.0 / 3.0),
        # Wrong class: one FN (class 1) and one FP (class 2).
        ([1001, 1001], [2001, 2001], 0.0),
        # Predicted pixels on void leave the union: IoU 2/2.
        ([VOID, 1001, 1001, 0], [1001, 1001, 1001, 0], 1.0),
    ],
)
def test_hand_made_cases(gt, pred, expected_pq):
    assert _pq_of(gt, pred).result()["PQ"] == pytest.approx(expected_pq)


def test_per_class_counts_of_a_wrong_class():
    per_class = _pq_of([1001, 1001, 0, 0], [2001, 2001, 0, 0]).per_class_results()
    np.testing.assert_array_equal(per_class["TP"], [1, 0, 0])
    np.testing.assert_array_equal(per_class["FN"], [0, 1, 0])
    np.testing.assert_array_equal(per_class["FP"], [0, 0, 1])
    result = _pq_of([1001, 1001, 0, 0], [2001, 2001, 0, 0]).result()
    assert (result["PQ_stuff"], result["PQ_thing"], result["N_thing"]) == (1.0, 0.0, 2)


def test_half_overlap_is_no_match():
    # IoU exactly 0.5 must not match (COCO uses IoU > 0.5).
    per_class = _pq_of([1001, 1001, 0, 0], [1001, 0, 0, 0]).per_class_results()
    assert (per_class["TP"][1], per_class["FN"][1], per_class["FP"][1]) == (0, 1, 1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ignore_label", [255, 0])
def test_random_frames_match_reference(seed, ignore_label):
    num_classes, things = 6, [2, 3, 5]
    rng = np.random.default_rng(seed)
    gts, preds = reference_metrics.random_video(
        rng, 4, 20, 23, num_classes, things, ignore_label, DIVISOR
    )
    metric = pq.PanopticQuality(num_classes, things, ignore_label, DIVISOR)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update_state(gt, pred)
    videos = {i: [frame] for i, frame in enumerate(zip(gts, preds, strict=True))}
    expected = reference_metrics.reference_vpq(
        videos, num_classes, things, ignore_label, DIVISOR, [1]
    )[1]
    result = metric.result()
    for key in ("PQ", "PQ_thing", "PQ_stuff"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    per_class = metric.per_class_results()
    for c, (iou, tp, fp, fn) in expected["per_class"].items():
        assert (per_class["TP"][c], per_class["FP"][c], per_class["FN"][c]) == (tp, fp, fn)
        assert per_class["IoU"][c] == pytest.approx(iou, abs=1e-12)


def _random_frames(seed):
    rng = np.random.default_rng(seed)
    gts, preds = reference_metrics.random_video(rng, 6, 16, 16, 3, THINGS, 255, DIVISOR)
    return list(zip(gts, preds, strict=True))


def test_merge_and_state_round_trip_equal_one_pass():
    full = pq.PanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR)
    shards = [pq.PanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR) for _ in range(2)]
    for i, (gt, pred) in enumerate(_random_frames(1)):
        full.update_state(gt, pred)
        shards[i % 2].update_state(gt, pred)
    merged = pq.PanopticQuality.from_state(pickle.loads(pickle.dumps(shards[0].get_state())))
    merged.merge_state(shards[1:])
    assert merged.result() == pytest.approx(full.result(), abs=1e-12)


def test_tf_tensors_equal_numpy_arrays():
    from_numpy = pq.PanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR)
    from_tf = pq.PanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR)
    for gt, pred in _random_frames(2):
        from_numpy.update_state(gt, pred)
        from_tf.update_state(tf.constant(gt, tf.int32), tf.constant(pred, tf.int64))
    assert from_tf.result() == from_numpy.result()


def test_reset_and_empty_results():
    metric = _pq_of([1001, 0], [2001, 0])
    metric.reset_states()
    assert metric.result()["PQ"] == 0.0
    assert metric.result()["N"] == 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="things_list"):
        pq.PanopticQuality(3, [3], 255, DIVISOR)
    with pytest.raises(ValueError, match="semantic classes"):
        _pq_of([1001], [5001])
    with pytest.raises(ValueError, match="cannot merge"):
        pq.PanopticQuality(3, [1], 255, DIVISOR).merge_state([_pq_of([0], [0])])
