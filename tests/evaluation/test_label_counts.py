"""Tests of deeplab_video.evaluation.label_counts."""

import numpy as np
import pytest

from deeplab_video.evaluation import label_counts

BOUND = 256 * 1000


def _pixel_oracle(gt, pred, bound):
    """Pair counts by np.unique over every pixel's int64 key."""
    keys, counts = np.unique(
        gt.astype(np.int64).ravel() * bound + pred.astype(np.int64).ravel(), return_counts=True
    )
    return keys // bound, keys % bound, counts


def _blocks(rng, shape, labels):
    """A piecewise-constant map: random rectangles of `labels` over a background."""
    frame = np.full(shape, labels[0], np.int64)
    for label in labels[1:]:
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, shape[0] + 1), rng.integers(1, shape[1] + 1)
        frame[y : y + h, x : x + w] = label
    return frame


def _assert_pairs_equal(result, expected):
    for got, want in zip(result, expected, strict=True):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_runs_of_piecewise_constant_maps_count_like_pixels(seed, dtype):
    rng = np.random.default_rng(seed)
    labels = [0, 1000, 11001, 11002, 13000, 13007, 255 * 1000 if dtype != np.uint16 else 60000]
    gt = _blocks(rng, (40, 200), labels).astype(dtype)
    pred = _blocks(rng, (40, 200), labels[::-1]).astype(dtype)
    _assert_pairs_equal(label_counts.label_pairs(gt, pred, BOUND), _pixel_oracle(gt, pred, BOUND))


@pytest.mark.parametrize("seed", range(3))
def test_noise_counts_like_pixels(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 50, (40, 40)) * 1000 + rng.integers(0, 3, (40, 40))
    pred = rng.integers(0, 50, (40, 40)) * 1000
    _assert_pairs_equal(label_counts.label_pairs(gt, pred, BOUND), _pixel_oracle(gt, pred, BOUND))


def test_by_hand():
    gt = np.array([[1, 1, 2], [2, 2, 1]])
    pred = np.array([[5, 5, 5], [5, 6, 5]])
    gt_ids, pred_ids, counts = label_counts.label_pairs(gt, pred, 10)
    assert list(zip(gt_ids.tolist(), pred_ids.tolist(), counts.tolist(), strict=True)) == [
        (1, 5, 3),
        (2, 5, 2),
        (2, 6, 1),
    ]


@pytest.mark.parametrize("shape", [(0, 5), (1, 1)])
def test_empty_and_single_pixel(shape):
    gt = np.full(shape, 7)
    pred = np.full(shape, 3)
    _assert_pairs_equal(label_counts.label_pairs(gt, pred, 10), _pixel_oracle(gt, pred, 10))


def test_label_pairs_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        label_counts.label_pairs(np.zeros((2, 2), int), np.zeros((2, 3), int), 10)
    with pytest.raises(ValueError, match="ground truth holds label 10, beyond .* label 9"):
        label_counts.label_pairs(np.full((2, 2), 10), np.zeros((2, 2), int), 10)
    noise = np.arange(16).reshape(4, 4) % 7  # Counted pixel by pixel.
    with pytest.raises(ValueError, match="prediction holds negative labels"):
        label_counts.label_pairs(noise, noise - 1, 10)
    with pytest.raises(ValueError, match="prediction holds negative labels"):
        label_counts.label_pairs(np.zeros((4, 4), int), np.full((4, 4), -3), 10)
    with pytest.raises(ValueError, match="too large"):
        label_counts.label_pairs(np.zeros((2, 2), int), np.zeros((2, 2), int), 2**32)


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_sum_by_key(dtype):
    keys = np.array([5, 2, 5, 9, 2, 5], np.int64)
    counts = np.array([1, 2, 3, 4, 5, 6], dtype)
    unique, sums = label_counts.sum_by_key(keys, counts)
    np.testing.assert_array_equal(unique, [2, 5, 9])
    np.testing.assert_array_equal(sums, [7, 10, 4])
    assert sums.dtype == dtype
    empty_keys, empty_sums = label_counts.sum_by_key(np.zeros(0, np.int64), np.zeros(0, dtype))
    assert empty_keys.size == 0 and empty_sums.size == 0


def test_concat_pairs_sums_frames():
    first = (np.array([1, 2]), np.array([3, 3]), np.array([4, 5]))
    second = (np.array([2, 7]), np.array([3, 0]), np.array([1, 1]))
    gt, pred, count = label_counts.concat_pairs([first, second], 10)
    assert gt.tolist() == [1, 2, 7] and pred.tolist() == [3, 3, 0] and count.tolist() == [4, 6, 1]


def test_check_classes_names_unknown_classes():
    label_counts.check_classes(np.array([0, 3, 255]), 4, 255, "x")
    with pytest.raises(ValueError, match=r"x holds semantic classes \[4, 9\]"):
        label_counts.check_classes(np.array([0, 4, 9, 255]), 4, 255, "x")
