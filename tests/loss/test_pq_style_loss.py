"""Tests for deeplab_video.loss.pq_style_loss against the numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import loss_utils, pq_style_loss, tube_matching
from tests.loss import clip_fixtures, numpy_reference

# Focal alpha, weight floor, matching epsilon and the loss's dice smoothing (kMaX).
_ALPHA, _FLOOR, _EPS, _SMOOTH = 0.75, 1e-5, 1e-5, 1.0


def _terms(targets, predictions):
    clip = clip_fixtures.flat_targets(targets)
    mask_logits = loss_utils.flatten_clip(tf.constant(predictions[common.PRED_MASK_LOGITS]))
    class_logits = tf.constant(predictions[common.PRED_CLASS_LOGITS])
    match = tube_matching.match_tubes(mask_logits, class_logits, clip, _EPS)
    dice = pq_style_loss.mask_dice_term(mask_logits, match, _ALPHA, _FLOOR, _SMOOTH)
    classes = pq_style_loss.class_term(class_logits, match, _ALPHA, _FLOOR)
    return mask_logits, dice, classes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_terms_equal_reference(seed):
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions(seed)
    mask_logits, dice, classes = _terms(targets, predictions)
    assert dice.shape == (clip_fixtures.BATCH,) and classes.shape == (clip_fixtures.BATCH,)
    for b in range(clip_fixtures.BATCH):
        gt, real, pixel_valid = clip_fixtures.reference_clip(targets, b)
        class_logits = predictions[common.PRED_CLASS_LOGITS][b]
        tube_classes = targets[common.TUBE_CLASSES][b]
        match = numpy_reference.match(
            mask_logits.numpy()[b], class_logits, gt, real, tube_classes, pixel_valid, _EPS
        )
        expected_dice, expected_class = numpy_reference.pq_terms(
            mask_logits.numpy()[b], class_logits, match, gt, tube_classes, _ALPHA, _FLOOR, _SMOOTH
        )
        np.testing.assert_allclose(dice.numpy()[b], expected_dice, rtol=1e-5)
        np.testing.assert_allclose(classes.numpy()[b], expected_class, rtol=1e-5)


def test_perfect_prediction_gives_near_zero_terms():
    targets = clip_fixtures.make_targets()
    _, dice, classes = _terms(targets, clip_fixtures.make_perfect_predictions(targets))
    np.testing.assert_allclose(dice.numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(classes.numpy(), 0.0, atol=1e-5)
    _, worse_dice, worse_classes = _terms(targets, clip_fixtures.make_predictions())
    assert np.all(worse_dice.numpy() > 1e-2) and np.all(worse_classes.numpy() > 1e-2)


def test_gradients_flow_to_mask_and_class_logits_only_through_the_loss():
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions()
    clip = clip_fixtures.flat_targets(targets)
    mask_logits = tf.Variable(
        loss_utils.flatten_clip(tf.constant(predictions[common.PRED_MASK_LOGITS]))
    )
    class_logits = tf.Variable(predictions[common.PRED_CLASS_LOGITS])
    with tf.GradientTape(persistent=True) as tape:
        match = tube_matching.match_tubes(mask_logits, class_logits, clip, _EPS)
        dice = pq_style_loss.mask_dice_term(mask_logits, match, _ALPHA, _FLOOR, _SMOOTH)
        classes = pq_style_loss.class_term(class_logits, match, _ALPHA, _FLOOR)
        total = tf.reduce_sum(dice + classes)
    mask_grad, class_grad = tape.gradient(total, [mask_logits, class_logits])
    for grad in (mask_grad, class_grad):
        assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)
    # The matching weights are constants: the dice term has no path to the class logits.
    assert tape.gradient(dice, class_logits) is None
