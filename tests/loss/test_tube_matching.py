"""Tests for deeplab_video.loss.tube_matching against the numpy reference."""

import numpy as np
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import loss_utils, tube_matching
from tests.loss import clip_fixtures, numpy_reference

_EPS = 1e-5


def _match(targets, predictions):
    clip = clip_fixtures.flat_targets(targets)
    mask_logits = loss_utils.flatten_clip(tf.constant(predictions[common.PRED_MASK_LOGITS]))
    class_logits = tf.constant(predictions[common.PRED_CLASS_LOGITS])
    return clip, mask_logits, tube_matching.match_tubes(mask_logits, class_logits, clip, _EPS)


def test_prepare_targets_drops_void_padding_and_empty_tubes():
    targets = clip_fixtures.make_targets()
    targets[common.TUBE_VALID][1, 2] = 1.0
    targets[common.TUBE_MASKS][1, ..., 2] = 0.0  # valid flag, but no pixel in the clip
    clip = clip_fixtures.flat_targets(targets)
    np.testing.assert_array_equal(clip.tube_valid.numpy(), [[1, 1, 0], [1, 1, 0]])
    void = loss_utils.flatten_clip(tf.constant(targets[common.VOID_MASK])).numpy()
    gt = clip.gt_masks.numpy()
    assert np.all(gt[void > 0] == 0)
    assert np.all(gt[0, :, 2] == 0)
    np.testing.assert_array_equal(clip.pixel_valid.numpy(), gt.sum(axis=2))


def test_match_equals_reference():
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions()
    _, mask_logits, match = _match(targets, predictions)
    for b in range(clip_fixtures.BATCH):
        gt, real, pixel_valid = clip_fixtures.reference_clip(targets, b)
        expected = numpy_reference.match(
            mask_logits.numpy()[b],
            predictions[common.PRED_CLASS_LOGITS][b],
            gt,
            real,
            targets[common.TUBE_CLASSES][b],
            pixel_valid,
            _EPS,
        )
        np.testing.assert_array_equal(match.query_to_tube.numpy()[b], expected["query_to_tube"])
        np.testing.assert_array_equal(match.pixel_valid.numpy()[b], expected["pixel_valid"])
        for key, field in [
            ("matched_dice", match.matched_mask_dice),
            ("matched_prob", match.matched_class_prob),
            ("void_ratio", match.void_ratio),
        ]:
            np.testing.assert_allclose(field.numpy()[b], expected[key], rtol=1e-5, atol=1e-6)
        # Every real tube is matched, padding slots never are.
        assert sorted(t for t in expected["query_to_tube"] if t >= 0) == list(np.flatnonzero(real))


def test_match_targets_follow_the_matching():
    targets = clip_fixtures.make_targets()
    clip, _, match = _match(targets, clip_fixtures.make_predictions())
    gt = clip.gt_masks.numpy()
    query_to_tube = match.query_to_tube.numpy()
    query_masks = match.query_masks.numpy()
    classes = match.query_classes.numpy()
    for b in range(clip_fixtures.BATCH):
        for n, tube in enumerate(query_to_tube[b]):
            if tube >= 0:
                np.testing.assert_array_equal(query_masks[b, :, n], gt[b, :, tube])
                assert classes[b, n] == targets[common.TUBE_CLASSES][b, tube]
                assert match.matched.numpy()[b, n] == 1.0
            else:
                assert np.all(query_masks[b, :, n] == 0)
                assert classes[b, n] == clip_fixtures.NUM_CLASSES


def test_perfect_prediction_matches_the_planted_queries():
    targets = clip_fixtures.make_targets()
    _, _, match = _match(targets, clip_fixtures.make_perfect_predictions(targets))
    np.testing.assert_array_equal(
        match.query_to_tube.numpy(), [[-1, 0, 1, -1, -1], [-1, 0, 1, 2, -1]]
    )
    matched = match.matched.numpy() > 0
    np.testing.assert_allclose(match.matched_mask_dice.numpy()[matched], 1.0, atol=1e-4)
    np.testing.assert_allclose(match.matched_class_prob.numpy()[matched], 1.0, atol=1e-4)


def test_more_tubes_than_queries_leaves_real_tubes_unmatched():
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions()
    predictions[common.PRED_MASK_LOGITS] = predictions[common.PRED_MASK_LOGITS][..., :2]
    predictions[common.PRED_CLASS_LOGITS] = predictions[common.PRED_CLASS_LOGITS][:, :2]
    _, _, match = _match(targets, predictions)
    query_to_tube = match.query_to_tube.numpy()
    assert np.all(query_to_tube >= 0)  # both queries take a real tube, never padding slot 2
    assert set(query_to_tube[0]) == {0, 1}
