"""Tests for deeplab_video.loss.mask_id_loss against the numpy reference."""

import numpy as np
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import loss_utils, mask_id_loss, tube_matching
from tests.loss import clip_fixtures, numpy_reference

_EPS = 1e-5


def _loss(targets, predictions):
    clip = clip_fixtures.flat_targets(targets)
    mask_logits = loss_utils.flatten_clip(tf.constant(predictions[common.PRED_MASK_LOGITS]))
    class_logits = tf.constant(predictions[common.PRED_CLASS_LOGITS])
    match = tube_matching.match_tubes(mask_logits, class_logits, clip, _EPS)
    return mask_logits, mask_id_loss.mask_id_cross_entropy(mask_logits, match)


def test_equals_reference():
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions(4)
    mask_logits, loss = _loss(targets, predictions)
    assert loss.shape == (clip_fixtures.BATCH,)
    for b in range(clip_fixtures.BATCH):
        gt, real, pixel_valid = clip_fixtures.reference_clip(targets, b)
        match = numpy_reference.match(
            mask_logits.numpy()[b],
            predictions[common.PRED_CLASS_LOGITS][b],
            gt,
            real,
            targets[common.TUBE_CLASSES][b],
            pixel_valid,
            _EPS,
        )
        expected = numpy_reference.mask_id(mask_logits.numpy()[b], match, gt)
        np.testing.assert_allclose(loss.numpy()[b], expected, rtol=1e-5)


def test_void_pixels_do_not_count():
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions(4)
    _, loss = _loss(targets, predictions)
    void = targets[common.VOID_MASK] > 0
    predictions[common.PRED_MASK_LOGITS][void] = 100.0 * np.random.default_rng(0).normal(
        size=(void.sum(), clip_fixtures.NUM_QUERIES)
    )
    _, changed = _loss(targets, predictions)
    np.testing.assert_allclose(changed.numpy(), loss.numpy(), rtol=1e-6)


def test_perfect_prediction_gives_near_zero_loss():
    targets = clip_fixtures.make_targets()
    _, loss = _loss(targets, clip_fixtures.make_perfect_predictions(targets))
    np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-6)
