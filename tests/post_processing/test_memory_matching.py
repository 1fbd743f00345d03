"""Tests for deeplab_video.post_processing.memory_matching."""

import numpy as np
import pytest
import scipy.optimize

from deeplab_video.post_processing import memory_matching


@pytest.mark.parametrize("squared", [False, True])
def test_association_scores_by_hand(squared):
    boxes = np.array([[0.0, 0.0, 0.3, 0.4]], np.float32)
    memory_boxes = np.array([[0.0, 0.0, 0.0, 0.0]], np.float32)  # distance 0.5 (sq 0.25)
    embeddings = np.array([[1.0, 0.0]], np.float32)
    memory_embeddings = np.array([[3.0, 3.0]], np.float32)  # cosine 1/sqrt(2)
    scores = memory_matching.association_scores(
        boxes,
        embeddings,
        memory_boxes,
        memory_embeddings,
        squared_distance=squared,
        temperature=2.0,
    )
    distance = 0.25 if squared else 0.5
    assert float(scores[0, 0]) == pytest.approx(np.sqrt(0.5) * np.exp(-distance / 2.0))
    naive = memory_matching.association_scores(
        boxes, embeddings, memory_boxes, memory_embeddings, location_aware=False
    )
    assert float(naive[0, 0]) == pytest.approx(np.sqrt(0.5))


@pytest.mark.parametrize("seed", range(4))
def test_hungarian_maximises_the_allowed_total_like_scipy(seed):
    rng = np.random.default_rng(seed)
    num_rows, num_cols = rng.integers(1, 7, size=2)
    scores = rng.uniform(size=(num_rows, num_cols)).astype(np.float32)
    allowed = rng.uniform(size=(num_rows, num_cols)) < 0.6
    slots = memory_matching.assign(scores, allowed, "hungarian").numpy()
    matched = slots >= 0
    assert len(set(slots[matched])) == matched.sum()  # one-to-one
    assert allowed[np.flatnonzero(matched), slots[matched]].all()
    gains = np.where(allowed, scores, 0.0)
    rows, cols = scipy.optimize.linear_sum_assignment(gains, maximize=True)
    total = scores[np.flatnonzero(matched), slots[matched]].sum()
    assert total == pytest.approx(gains[rows, cols].sum(), abs=1e-5)


def test_argmax_resolves_contested_entries_by_score():
    scores = np.array([[0.9, 0.8], [0.95, 0.1], [0.2, 0.3]], np.float32)
    allowed = np.array([[True, True], [True, True], [False, False]])
    np.testing.assert_array_equal(memory_matching.assign(scores, allowed, "argmax"), [-1, 0, -1])
    np.testing.assert_array_equal(memory_matching.assign(scores, allowed), [1, 0, -1])
    empty = memory_matching.assign(np.zeros([0, 2], np.float32), np.zeros([0, 2], bool))
    assert empty.shape == (0,)
    with pytest.raises(ValueError, match="assignment"):
        memory_matching.assign(scores, allowed, "greedy")
