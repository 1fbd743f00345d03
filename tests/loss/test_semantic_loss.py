"""Tests for deeplab_video.loss.semantic_loss."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import loss_utils, semantic_loss
from tests.loss import clip_fixtures, numpy_reference

_PIXELS = clip_fixtures.FRAMES * clip_fixtures.HEIGHT * clip_fixtures.WIDTH


def _inputs(seed=1):
    targets = clip_fixtures.make_targets()
    logits = clip_fixtures.make_predictions(seed)[common.PRED_SEMANTIC_LOGITS]
    flat_logits = logits.reshape(clip_fixtures.BATCH, _PIXELS, -1)
    labels = targets[common.SEMANTIC_STRIDED].reshape(clip_fixtures.BATCH, _PIXELS)
    return targets, flat_logits, labels


def _loss(logits, labels, weights, sample_k=0, top_k_percent=1.0):
    return semantic_loss.auxiliary_semantic_loss(
        tf.constant(logits),
        tf.constant(labels),
        tf.constant(weights, tf.float32),
        tf.zeros(labels.shape),
        sample_k=sample_k,
        top_k_percent=top_k_percent,
        ignore_label=clip_fixtures.IGNORE_LABEL,
    ).numpy()


@pytest.mark.parametrize("top_k_percent", [1.0, 0.5, 0.1])
def test_equals_reference(top_k_percent):
    _, logits, labels = _inputs()
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=labels.shape)
    loss = _loss(logits, labels, weights, top_k_percent=top_k_percent)
    for b in range(clip_fixtures.BATCH):
        expected = numpy_reference.semantic(
            logits[b], labels[b], weights[b], top_k_percent, clip_fixtures.IGNORE_LABEL
        )
        np.testing.assert_allclose(loss[b], expected, rtol=1e-5)


def test_ignore_label_pixels_do_not_count():
    _, logits, labels = _inputs()
    ones = np.ones(labels.shape)
    loss = _loss(logits, labels, ones)
    logits[labels == clip_fixtures.IGNORE_LABEL] *= 50.0
    np.testing.assert_allclose(_loss(logits, labels, ones), loss, rtol=1e-6)


def test_sampling_draws_only_tube_pixels_when_there_are_enough():
    targets, logits, labels = _inputs()
    clip = clip_fixtures.flat_targets(targets)
    sampling_logits = loss_utils.inverse_area_sampling_logits(clip.gt_masks, clip.pixel_valid, 2.0)
    # The crowd pixel is labelled but void: a huge weight there shows whether it is drawn.
    weights = np.ones(labels.shape, np.float32)
    weights[0, clip_fixtures.HEIGHT * clip_fixtures.WIDTH - 1] = 1e6
    assert _loss(logits, labels, weights)[0] > 1e3
    for _ in range(10):
        sampled = semantic_loss.auxiliary_semantic_loss(
            tf.constant(logits),
            tf.constant(labels),
            tf.constant(weights),
            sampling_logits,
            sample_k=8,
            top_k_percent=1.0,
            ignore_label=clip_fixtures.IGNORE_LABEL,
        ).numpy()
        assert np.all(np.isfinite(sampled)) and np.all(sampled < 100.0)


def test_small_instance_pixel_weights_hand_worked():
    # 2 frames of 2x2 pixels; tube 0 covers 1 pixel in frame 0 and 3 in frame 1,
    # tube 1 covers 2 pixels in frame 0. Small means fewer than 2 pixels in the frame.
    frame0 = [[1, 0], [0, 1], [0, 1], [0, 0]]
    frame1 = [[1, 0], [1, 0], [1, 0], [0, 0]]
    gt = tf.constant([frame0 + frame1], tf.float32)
    weights = semantic_loss.small_instance_pixel_weights(gt, 2, min_area=2, small_weight=3.0)
    np.testing.assert_allclose(weights.numpy(), [[3, 1, 1, 1, 1, 1, 1, 1]])
    off = semantic_loss.small_instance_pixel_weights(gt, 2, min_area=0, small_weight=3.0)
    np.testing.assert_allclose(off.numpy(), np.ones((1, 8)))
