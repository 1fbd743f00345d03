"""Tests of deeplab_video.evaluation.vpq."""

import pickle

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.evaluation import pq, vpq
from tests.evaluation import reference_metrics

DIVISOR = 1000
VOID = 255 * DIVISOR
# Classes: 0 = stuff, 1 = thing.
NUM_CLASSES, THINGS = 2, [1]


def _vpq(frames, window_sizes=(1, 2, 3, 4)):
    metric = vpq.VideoPanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR, window_sizes)
    for gt, pred in frames:
        metric.update_state(np.array([gt]), np.array([pred]), "video")
    return metric


def test_perfect_prediction_scores_one():
    frames = [([0, 0, 1001, 1002], [0, 0, 1001, 1002])] * 5
    result = _vpq(frames).result()
    for key in ("VPQ", "VPQ_thing", "VPQ_stuff", "VPQ_window1", "VPQ_window4"):
        assert result[key] == 1.0


def test_id_switch_lowers_only_the_longer_windows():
    # A car (1001) is predicted as 1001 in frames 0-1 and as 1002 in frames 2-3.
    gt = [1001, 1001, 0, 0]
    frames = [(gt, [1001, 1001, 0, 0])] * 2 + [(gt, [1002, 1002, 0, 0])] * 2
    result = _vpq(frames).result()
    # Stuff is perfect in every window; the thing tube:
    #   n=1: all 4 windows match.
    #   n=2: windows 0-1 and 2-3 match; window 1-2 has two halves (IoU 0.5): 1 FN, 2 FP.
    #   n=3: each window matches the 4-pixel half (IoU 2/3) and has the other as 1 FP.
    #   n=4: both halves have IoU 0.5: 1 FN, 2 FP.
    thing = {1: 1.0, 2: 2 / 3.5, 3: (4 / 3) / 3, 4: 0.0}
    for n, value in thing.items():
        assert result[f"VPQ_thing_window{n}"] == pytest.approx(value)
        assert result[f"VPQ_stuff_window{n}"] == 1.0
        assert result[f"VPQ_window{n}"] == pytest.approx((value + 1.0) / 2)
    assert result["VPQ"] == pytest.approx(np.mean([(v + 1) / 2 for v in thing.values()]))
    per_class = _vpq(frames).per_class_results()
    assert (per_class[2]["TP"][1], per_class[2]["FP"][1], per_class[2]["FN"][1]) == (2, 2, 1)


def test_crowd_and_void_are_not_penalised_over_tubes():
    # Frames 0-2: a crowd region of class 1 (instance 0) and a void pixel, both covered by
    # one predicted car; a real car (1001) is predicted perfectly.
    gt = [1000, 1000, VOID, 1001, 1001, 0]
    pred = [1005, 1005, 1005, 1001, 1001, 0]
    result = _vpq([(gt, pred)] * 3, window_sizes=(1, 3)).result()
    assert result["VPQ_window1"] == 1.0
    assert result["VPQ_window3"] == 1.0


def test_prediction_mostly_on_stuff_is_a_false_positive():
    gt = [0, 0, 0, VOID, 1001, 1001]
    pred = [1005, 1005, 0, 1005, 1001, 1001]
    per_class = _vpq([(gt, pred)] * 2, window_sizes=(2,)).per_class_results()[2]
    assert (per_class["TP"][1], per_class["FP"][1], per_class["FN"][1]) == (1, 1, 0)


def _random_videos(seed, num_classes, things, ignore_label):
    rng = np.random.default_rng(seed)
    videos = {}
    for s in range(3):
        gts, preds = reference_metrics.random_video(
            rng, int(rng.integers(1, 7)), 14, 17, num_classes, things, ignore_label, DIVISOR
        )
        videos[f"v{s}"] = list(zip(gts, preds, strict=True))
    return videos


def _feed_interleaved(metric, videos, seed):
    """Feeds each video in frame order, interleaving videos at random."""
    rng = np.random.default_rng(seed)
    order = [name for name, frames in videos.items() for _ in frames]
    rng.shuffle(order)
    cursors = dict.fromkeys(videos, 0)
    for name in order:
        gt, pred = videos[name][cursors[name]]
        cursors[name] += 1
        metric.update_state(gt, pred, name)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_classes,things,ignore_label", [(5, [2, 3], 255), (6, [1, 4], 0)])
def test_random_videos_match_reference(seed, num_classes, things, ignore_label):
    windows = (1, 2, 3, 4)
    videos = _random_videos(seed, num_classes, things, ignore_label)
    metric = vpq.VideoPanopticQuality(num_classes, things, ignore_label, DIVISOR, windows)
    _feed_interleaved(metric, videos, seed)
    expected = reference_metrics.reference_vpq(
        videos, num_classes, things, ignore_label, DIVISOR, windows
    )
    result, per_class = metric.result(), metric.per_class_results()
    for n in windows:
        for suffix in ("", "_thing", "_stuff"):
            key = f"VPQ{suffix}_window{n}"
            assert result[key] == pytest.approx(expected[n]["PQ" + suffix], abs=1e-12), key
        for c, (iou, tp, fp, fn) in expected[n]["per_class"].items():
            assert (per_class[n]["TP"][c], per_class[n]["FP"][c], per_class[n]["FN"][c]) == (
                tp,
                fp,
                fn,
            )
            assert per_class[n]["IoU"][c] == pytest.approx(iou, abs=1e-12)
    assert result["VPQ"] == pytest.approx(np.mean([expected[n]["PQ"] for n in windows]))


def test_window_one_equals_frame_panoptic_quality():
    videos = _random_videos(4, 5, [2, 3], 255)
    video_metric = vpq.VideoPanopticQuality(5, [2, 3], 255, DIVISOR, window_sizes=(1, 2))
    frame_metric = pq.PanopticQuality(5, [2, 3], 255, DIVISOR)
    for name, frames in videos.items():
        for gt, pred in frames:
            video_metric.update_state(gt, pred, name)
            frame_metric.update_state(gt, pred)
    assert video_metric.window_results()[1] == frame_metric.result()


def _metric():
    return vpq.VideoPanopticQuality(5, [2, 3], 255, DIVISOR, window_sizes=(1, 3))


def test_merge_of_shards_with_whole_sequences_equals_one_pass():
    videos = _random_videos(5, 5, [2, 3], 255)
    full, shards = _metric(), [_metric(), _metric()]
    for i, (name, frames) in enumerate(videos.items()):
        for gt, pred in frames:
            full.update_state(gt, pred, name)
            shards[i % 2].update_state(gt, pred, name)
    merged = _metric()
    merged.merge_state(shards)
    assert merged.result() == pytest.approx(full.result(), abs=1e-12)
    with pytest.raises(ValueError, match="whole sequences"):
        merged.merge_state(shards[:1])


def test_state_round_trip_continues_a_sequence():
    frames = _random_videos(6, 5, [2, 3], 255)["v0"] * 2
    full, first = _metric(), _metric()
    for gt, pred in frames:
        full.update_state(gt, pred, 7)
    half = len(frames) // 2
    for gt, pred in frames[:half]:
        first.update_state(gt, pred, 7)
    second = vpq.VideoPanopticQuality.from_state(pickle.loads(pickle.dumps(first.get_state())))
    for gt, pred in frames[half:]:
        second.update_state(gt, pred, 7)
    assert second.result() == pytest.approx(full.result(), abs=1e-12)


def test_tf_tensors_equal_numpy_arrays():
    videos = _random_videos(7, 5, [2, 3], 255)
    from_numpy, from_tf = _metric(), _metric()
    for name, frames in videos.items():
        for gt, pred in frames:
            from_numpy.update_state(gt, pred, name)
            from_tf.update_state(tf.constant(gt), tf.constant(pred, tf.int32), tf.constant(name))
    assert from_tf.result() == from_numpy.result()


def test_reset_states_forgets_frames_and_sequences():
    metric = _vpq([([1001, 0], [1002, 0])] * 2)
    metric.reset_states()
    metric.update_state(np.array([[1001, 0]]), np.array([[1001, 0]]), "video")
    assert metric.result()["VPQ_window1"] == 1.0
    assert metric.result()["VPQ_window2"] == 0.0  # No 2-frame window yet.


@pytest.mark.parametrize("window_sizes", [(), (0, 1), (2, 2)])
def test_bad_window_sizes_raise(window_sizes):
    with pytest.raises(ValueError, match="window_sizes"):
        vpq.VideoPanopticQuality(NUM_CLASSES, THINGS, 255, DIVISOR, window_sizes)
