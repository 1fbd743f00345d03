"""Tests for deeplab_video.post_processing.mask_merging."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.post_processing import mask_merging


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.25, 0.3, 0.4, 0.5, 0.9])
def test_masks_per_pixel_bounds_the_probabilities_above_threshold(threshold):
    k = mask_merging.masks_per_pixel(threshold, num_queries=64)
    # The most probabilities that can exceed t is the largest m with m * t < 1.
    most = max(m for m in range(1, 65) if m * threshold < 1.0)
    assert most <= k <= most + 1
    assert mask_merging.masks_per_pixel(0.0, num_queries=7) == 7


def test_candidates_match_a_thresholded_softmax():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(200, 9)) * 3).astype(np.float32)
    candidates = mask_merging.mask_candidates(logits, 0.3)
    probs = tf.nn.softmax(logits).numpy()
    binary = np.zeros_like(probs, bool)
    rows = np.repeat(np.arange(200)[:, None], candidates.ids.shape[1], axis=1)
    binary[rows[candidates.on], candidates.ids.numpy()[candidates.on]] = True
    np.testing.assert_array_equal(binary, probs > 0.3)
    area, confidence = mask_merging.mask_area_and_confidence(candidates, 9)
    np.testing.assert_allclose(area, (probs > 0.3).sum(0))
    expected = np.where(area > 0, (probs * (probs > 0.3)).sum(0) / np.maximum(area, 1), 0)
    np.testing.assert_allclose(confidence, expected, rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_maskwise_owner_equals_greedy_pasting(seed):
    rng = np.random.default_rng(seed)
    num_pixels, num_queries = 300, 10
    logits = (rng.normal(size=(num_pixels, num_queries)) * 2.5).astype(np.float32)
    candidates = mask_merging.mask_candidates(logits, 0.35)
    area, _ = mask_merging.mask_area_and_confidence(candidates, num_queries)
    confident = rng.uniform(size=num_queries) < 0.8
    limit = rng.integers(0, 12, size=num_queries).astype(np.float32)
    order = rng.permutation(num_queries)
    rank = np.argsort(order).astype(np.int32)
    owner = mask_merging.maskwise_owner(candidates, area, confident, limit, rank, 0.6).numpy()

    binary = tf.nn.softmax(logits).numpy() > 0.35
    canvas = np.full(num_pixels, num_queries)
    for query in order:
        new = binary[:, query] & (canvas == num_queries)
        count = new.sum()
        if confident[query] and count > binary[:, query].sum() * 0.6 and count >= limit[query]:
            canvas[new] = rank[query]
    np.testing.assert_array_equal(owner, canvas)


def test_pixelwise_owner_by_hand():
    logits = np.array(
        [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [0.2, 0.0, -9.0]], np.float32
    )
    confident = np.array([True, True, False])
    rank = np.array([1, 0, 2], np.int32)
    owner = mask_merging.pixelwise_owner(logits, confident, np.zeros(3, np.float32), rank, 0.6)
    # Pixel 2's best query is unconfident; pixel 3's best probability is 0.55 <= 0.6.
    np.testing.assert_array_equal(owner, [1, 0, 3, 3])
    # At threshold 0.5 query 0 owns pixels 0 and 3: an area limit of 2 keeps it, 3 drops it.
    for limit, expected in ((2.0, [1, 0, 3, 1]), (3.0, [3, 0, 3, 3])):
        limits = np.array([limit, 0, 0], np.float32)
        owner = mask_merging.pixelwise_owner(logits, confident, limits, rank, 0.5)
        np.testing.assert_array_equal(owner, expected)
