"""Tests for deeplab_video.post_processing.mask_merging."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.post_processing import mask_merging


def _confident_masks(logits, confident, threshold):
    ids = mask_merging.confident_ids(confident)
    return mask_merging.confident_masks(logits, tf.gather(logits, ids, axis=1), ids, threshold)


def test_confident_masks_match_a_thresholded_softmax():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(200, 9)) * 3).astype(np.float32)
    confident = np.array([True, False, True, True, False, False, True, True, False])
    masks = _confident_masks(logits, confident, 0.3)
    probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_array_equal(masks.ids, [0, 2, 3, 6, 7])
    np.testing.assert_allclose(masks.probs, probs[:, confident], rtol=1e-5)
    np.testing.assert_array_equal(masks.on, probs[:, confident] > 0.3)
    sets = mask_merging.mask_sets(masks.on, 9)
    area, confidence = mask_merging.mask_area_and_confidence(masks, sets, 9)
    binary = (probs > 0.3) & confident
    np.testing.assert_array_equal(area, binary.sum(0))
    expected = np.where(area > 0, (probs * binary).sum(0) / np.maximum(area, 1), 0)
    np.testing.assert_allclose(confidence, expected, rtol=1e-5)


@pytest.mark.parametrize("num_masks", [0, 1, 5, 23, 24, 25, 50])
def test_mask_sets_group_pixels_by_their_masks(num_masks):
    rng = np.random.default_rng(num_masks)
    # Few distinct rows, so that sets repeat; masks beyond bit 24 exercise the word chain.
    rows = rng.uniform(size=(6, num_masks)) < 0.3
    on = rows[rng.integers(0, 6, size=400)]
    sets = mask_merging.mask_sets(tf.constant(on, tf.bool), max_masks=64)
    contains = sets.contains.numpy()
    np.testing.assert_array_equal(contains[sets.set_of_pixel.numpy()], on)
    assert len({row.tobytes() for row in contains}) == len(contains)  # Distinct sets.
    np.testing.assert_array_equal(
        sets.counts.numpy(), np.bincount(sets.set_of_pixel.numpy(), minlength=len(contains))
    )


@pytest.mark.parametrize("seed", range(5))
def test_maskwise_owner_equals_greedy_pasting(seed):
    rng = np.random.default_rng(seed)
    num_pixels, num_queries = 300, 10
    logits = (rng.normal(size=(num_pixels, num_queries)) * 2.5).astype(np.float32)
    confident = rng.uniform(size=num_queries) < 0.8
    masks = _confident_masks(logits, confident, 0.35)
    sets = mask_merging.mask_sets(masks.on, num_queries)
    area, _ = mask_merging.mask_area_and_confidence(masks, sets, num_queries)
    limit = rng.integers(0, 12, size=num_queries).astype(np.float32)
    order = rng.permutation(num_queries)
    rank = np.argsort(order).astype(np.int32)
    owner = mask_merging.maskwise_owner(masks.ids, sets, area, limit, rank, 0.6).numpy()

    binary = tf.nn.softmax(logits).numpy() > 0.35
    canvas = np.full(num_pixels, num_queries)
    for query in order:
        new = binary[:, query] & (canvas == num_queries)
        count = new.sum()
        if confident[query] and count > binary[:, query].sum() * 0.6 and count >= limit[query]:
            canvas[new] = rank[query]
    np.testing.assert_array_equal(owner, canvas)


def test_no_confident_query_leaves_everything_void():
    logits = np.zeros((7, 4), np.float32)
    masks = _confident_masks(logits, np.zeros(4, bool), 0.2)
    sets = mask_merging.mask_sets(masks.on, 4)
    area, confidence = mask_merging.mask_area_and_confidence(masks, sets, 4)
    np.testing.assert_array_equal(area, 0.0)
    np.testing.assert_array_equal(confidence, 0.0)
    owner = mask_merging.maskwise_owner(
        masks.ids, sets, area, np.zeros(4, np.float32), [0, 1, 2, 3], 0.5
    )
    np.testing.assert_array_equal(owner, [4] * 7)


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
