"""Tests of the STQ / VPQ / PQ bundle shared by the evaluator and the eval CLI."""

import numpy as np

from deeplab_video.evaluation import evaluate_lib, pq, stq, video_metrics, vpq

SPACE = evaluate_lib.LabelSpace(
    num_classes=3, thing_ids=(2,), ignore_label=255, label_divisor=100, class_names=("a", "b", "c")
)


def _frames(seed: int, count: int = 4):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        gt = rng.choice([0, 100, 201, 202], size=(6, 8)).astype(np.int32)
        pred = np.where(rng.random((6, 8)) < 0.8, gt, 201).astype(np.int32)
        yield gt, pred


def test_results_equal_the_three_metrics_run_alone():
    bundle = video_metrics.VideoMetrics(SPACE, window_sizes=(1, 2))
    args = (3, [2], 255, 100)
    alone = (stq.STQuality(*args, 2**16 * 100), vpq.VideoPanopticQuality(*args, (1, 2)))
    frame_pq = pq.PanopticQuality(*args)
    for gt, pred in _frames(0):
        bundle.update(gt, pred, "seq")
        for metric in alone:
            metric.update_state(gt, pred, "seq")
        frame_pq.update_state(gt, pred)
    results = bundle.results()
    assert results["num_frames"] == 4 and results["num_sequences"] == 1
    assert results["STQ"] == alone[0].result()["STQ"]
    assert results["VPQ"] == alone[1].result()["VPQ"]
    assert results["PQ"] == frame_pq.result()["PQ"]
    assert [entry["name"] for entry in results["per_class"]] == ["a", "b", "c"]


def test_merge_equals_one_pass():
    whole = video_metrics.VideoMetrics(SPACE)
    shards = [video_metrics.VideoMetrics(SPACE) for _ in range(2)]
    for index, (gt, pred) in enumerate(_frames(1, 6)):
        sequence = index // 3
        whole.update(gt, pred, sequence)
        shards[sequence].update(gt, pred, sequence)
    shards[0].merge(shards[1:])
    assert shards[0].results() == whole.results()


def test_without_frame_pq_it_is_reported_as_none():
    bundle = video_metrics.VideoMetrics(SPACE, frame_pq=False)
    for gt, pred in _frames(2):
        bundle.update(gt, pred, 0)
    results = bundle.results()
    assert results["PQ"] is None and results["STQ"] is not None
    assert all(entry["PQ"] is None for entry in results["per_class"])
