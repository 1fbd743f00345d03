"""Tests for deeplab_video.loss.loss_utils."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.loss import loss_utils


def test_flatten_clip_orders_pixels_frame_then_row_then_column():
    clip = np.arange(2 * 3 * 2 * 4).reshape(2, 3, 2, 4)
    flat = loss_utils.flatten_clip(tf.constant(clip)).numpy()
    np.testing.assert_array_equal(flat, clip.reshape(2, 24))
    channels = np.arange(2 * 3 * 2 * 4 * 5).reshape(2, 3, 2, 4, 5)
    flat = loss_utils.flatten_clip(tf.constant(channels))
    assert flat.shape == (2, 24, 5)
    np.testing.assert_array_equal(flat.numpy()[1, 1 * 8 + 1 * 4 + 2], channels[1, 1, 1, 2])
    with pytest.raises(ValueError, match="num_frames"):
        loss_utils.flatten_clip(tf.zeros([2, 3, 4]))


def test_flatten_clip_keeps_a_dynamic_batch():
    flatten = tf.function(
        loss_utils.flatten_clip, input_signature=[tf.TensorSpec([None, 2, 3, 4, 5], tf.float32)]
    )
    assert flatten.get_concrete_function().structured_outputs.shape.as_list() == [None, 24, 5]


def test_mean_over_nonzero():
    losses = tf.constant([[0.0, 2.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(loss_utils.mean_over_nonzero(losses).numpy(), [3.0, 0.0])


def test_inverse_area_sampling_logits_hand_worked():
    # 4 pixels: tube 0 covers pixels 0-2, tube 1 covers pixel 3... but pixel 3 is invalid.
    gt = tf.constant([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    valid = tf.constant([[1.0, 1.0, 1.0, 0.0]])
    logits = loss_utils.inverse_area_sampling_logits(gt, valid, temperature=2.0).numpy()
    np.testing.assert_allclose(logits[0, :3], 2.0 * np.log(4.0 / 3.0), rtol=1e-6)
    assert logits[0, 3] == loss_utils.MASKING_LOGIT


def test_gumbel_top_k_draws_distinct_valid_pixels():
    logits = np.full((3, 50), loss_utils.MASKING_LOGIT, np.float32)
    logits[:, 10:30] = 0.0
    indices = loss_utils.gumbel_top_k(tf.constant(logits), 12).numpy()
    assert indices.shape == (3, 12)
    for row in indices:
        assert len(set(row.tolist())) == 12
        assert np.all((row >= 10) & (row < 30))


def test_gumbel_top_k_follows_the_logits():
    # Pixel 0 has probability e^3 / (e^3 + 9) ~ 0.69 of being the single draw.
    logits = tf.constant(np.array([[3.0] + [0.0] * 9] * 4000, np.float32))
    first = loss_utils.gumbel_top_k(logits, 1).numpy()[:, 0]
    expected = np.exp(3.0) / (np.exp(3.0) + 9.0)
    assert abs(np.mean(first == 0) - expected) < 0.04


def test_sample_size():
    assert loss_utils.sample_size(0, 100) is None
    assert loss_utils.sample_size(100, 100) is None
    assert loss_utils.sample_size(40, 100) == 40
    with pytest.raises(ValueError, match="static"):
        loss_utils.sample_size(40, None)
