"""Tests for deeplab_video.loss.instance_discrimination against the numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import instance_discrimination, loss_utils
from tests.loss import clip_fixtures, numpy_reference

_PIXELS = clip_fixtures.FRAMES * clip_fixtures.HEIGHT * clip_fixtures.WIDTH


def _loss(features, targets, sample_k, temperature=0.3):
    clip = clip_fixtures.flat_targets(targets)
    return instance_discrimination.instance_discrimination_loss(
        loss_utils.flatten_clip(tf.convert_to_tensor(features)),
        clip.gt_masks,
        clip.pixel_valid,
        sample_k=sample_k,
        sample_temperature=1.5,
        temperature=temperature,
    )


@pytest.mark.parametrize("sample_k", [0, _PIXELS, 10 * _PIXELS])
def test_all_pixels_equal_reference(sample_k):
    targets = clip_fixtures.make_targets()
    features = clip_fixtures.make_predictions()[common.PRED_PIXEL_FEATURES]
    loss = _loss(features, targets, sample_k, temperature=0.5).numpy()
    assert loss.shape == (clip_fixtures.BATCH,)
    for b in range(clip_fixtures.BATCH):
        gt, _, pixel_valid = clip_fixtures.reference_clip(targets, b)
        expected = numpy_reference.instance_discrimination(
            features[b].reshape(_PIXELS, -1), gt, pixel_valid, 0.5
        )
        np.testing.assert_allclose(loss[b], expected, rtol=1e-5)


def test_sampled_loss_is_finite_and_near_the_full_loss():
    targets = clip_fixtures.make_targets()
    features = clip_fixtures.make_predictions()[common.PRED_PIXEL_FEATURES]
    full = _loss(features, targets, 0).numpy()
    sampled = np.mean([_loss(features, targets, 24).numpy() for _ in range(20)], axis=0)
    assert np.all(np.isfinite(sampled))
    np.testing.assert_allclose(sampled, full, rtol=0.3)


def test_features_that_separate_tubes_reach_the_entropy_bound():
    # The soft target of a pixel is uniform over its tube's n pixels, so the loss is at least
    # log(n), reached when features are equal within a tube and orthogonal across tubes.
    targets = clip_fixtures.make_targets()
    gt = targets[common.TUBE_MASKS]
    ideal = np.concatenate([gt, 1.0 - gt.sum(-1, keepdims=True)], axis=-1)
    random = clip_fixtures.make_predictions()[common.PRED_PIXEL_FEATURES]
    ideal_loss = _loss(ideal, targets, 0, temperature=0.02).numpy()
    random_loss = _loss(random, targets, 0, temperature=0.02).numpy()
    for b in range(clip_fixtures.BATCH):
        gt_flat, _, pixel_valid = clip_fixtures.reference_clip(targets, b)
        tube_sizes = gt_flat.sum(axis=0)
        bound = np.mean(
            [np.log(tube_sizes[gt_flat[p].argmax()]) for p in np.flatnonzero(pixel_valid)]
        )
        np.testing.assert_allclose(ideal_loss[b], bound, rtol=1e-4)
        assert random_loss[b] > bound + 1.0


def test_gradients_reach_pixel_features():
    targets = clip_fixtures.make_targets()
    features = tf.Variable(clip_fixtures.make_predictions()[common.PRED_PIXEL_FEATURES])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_loss(features, targets, 16))
    grad = tape.gradient(loss, features).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
