"""Tests for deeplab_video.evaluation.id_switches on hand-drawn 4x6 frames."""

import numpy as np
import pytest

from deeplab_video.evaluation import id_switches

DIVISOR, IGNORE, DISC, BOX, SKY = 1000, 255, 3, 4, 0
VOID = IGNORE * DIVISOR


def _metric():
    return id_switches.IdSwitches(6, [3, 4, 5], IGNORE, DIVISOR)


def _frame(left, right, background=SKY * DIVISOR):
    """4x6 frame: `left` on columns 0-1, `right` on columns 3-4 (None: background)."""
    frame = np.full((4, 6), background, np.int32)
    if left is not None:
        frame[:, 0:2] = left
    if right is not None:
        frame[:, 3:5] = right
    return frame


A, B = DISC * DIVISOR + 1, DISC * DIVISOR + 2  # two look-alike ground-truth discs


def _run(pairs, metric=None, sequence_id=0):
    metric = metric or _metric()
    for gt, pred in pairs:
        metric.update_state(gt, pred, sequence_id)
    return metric


def test_swapped_ids_count_one_switch_per_track():
    gt = _frame(A, B)
    frames = [
        (gt, _frame(DISC * DIVISOR + 7, DISC * DIVISOR + 9)),
        (gt, _frame(DISC * DIVISOR + 9, DISC * DIVISOR + 7)),  # the two ids swap: 2
        (gt, _frame(DISC * DIVISOR + 9, DISC * DIVISOR + 7)),  # and keep: 0
    ]
    result = _run(frames).result()
    assert result == {"IDSW": 2, "IDSW_per_seq": {0: 2}, "num_tracks": 2, "num_matches": 6}


def test_a_track_that_returns_with_its_id_makes_no_switch():
    seven, eight = DISC * DIVISOR + 7, DISC * DIVISOR + 8
    frames = [
        (_frame(A, None), _frame(seven, None)),
        (_frame(None, None), _frame(None, None)),  # hidden
        (_frame(A, None), _frame(None, None)),  # missed
        (_frame(A, None), _frame(seven, None)),  # back with its id: 0
        (_frame(A, None), _frame(eight, None)),  # a new id: 1
    ]
    assert _run(frames).result()["IDSW"] == 1


def test_matches_need_the_class_and_more_than_half_the_union():
    gt = _frame(A, None)
    half = gt.copy()
    half[:, 0:2] = SKY * DIVISOR
    half[:, 1:3] = DISC * DIVISOR + 5  # IoU 4/12: no match
    frames = [
        (gt, _frame(DISC * DIVISOR + 4, None)),
        (gt, _frame(BOX * DIVISOR + 5, None)),  # another class: no match
        (gt, half),
        (gt, _frame(DISC * DIVISOR + 4, None)),
    ]
    result = _run(frames).result()
    assert result["IDSW"] == 0 and result["num_matches"] == 2


def test_void_pixels_leave_the_union_and_crowd_is_never_matched():
    gt = np.full((4, 6), VOID, np.int32)  # columns 2-3 stay void
    gt[:, 0:2], gt[:, 4], gt[:, 5] = A, DISC * DIVISOR, SKY * DIVISOR  # column 4: crowd
    # Spread over the void columns: IoU 8/8 with void left out (8/16 if it counted).
    spread = np.full((4, 6), SKY * DIVISOR, np.int32)
    spread[:, 0:4] = DISC * DIVISOR + 1
    moved = np.full((4, 6), SKY * DIVISOR, np.int32)
    moved[:, 0:2], moved[:, 4] = DISC * DIVISOR + 2, DISC * DIVISOR + 3
    result = _run([(gt, spread), (gt, moved)]).result()
    # A switched from id 1 to id 2; the crowd column matched nothing.
    assert result == {"IDSW": 1, "IDSW_per_seq": {0: 1}, "num_tracks": 1, "num_matches": 2}


def test_sequences_are_counted_apart_and_may_interleave():
    metric = _metric()
    seven, nine = DISC * DIVISOR + 7, DISC * DIVISOR + 9
    metric.update_state(_frame(A, None), _frame(seven, None), "b")
    metric.update_state(_frame(A, None), _frame(nine, None), "a")  # another video's A
    metric.update_state(_frame(A, None), _frame(nine, None), "b")  # switch in b
    metric.update_state(_frame(A, None), _frame(nine, None), "a")
    result = metric.result()
    assert result["IDSW_per_seq"] == {"b": 1, "a": 0} and result["num_tracks"] == 2
    metric.reset_states()
    assert metric.result() == {"IDSW": 0, "IDSW_per_seq": {}, "num_tracks": 0, "num_matches": 0}


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="iou_threshold"):
        id_switches.IdSwitches(6, [3], IGNORE, DIVISOR, iou_threshold=0.3)
    with pytest.raises(ValueError, match="things_list"):
        id_switches.IdSwitches(6, [7], IGNORE, DIVISOR)
    metric = _metric()
    with pytest.raises(ValueError, match="shape"):
        metric.update_state(np.zeros((4, 6), np.int32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="classes"):
        metric.update_state(np.zeros((4, 6), np.int32), np.full((4, 6), 9 * DIVISOR, np.int32))
    with pytest.raises(TypeError, match="integer"):
        metric.update_state(np.zeros((4, 6), np.float32), np.zeros((4, 6), np.int32))
