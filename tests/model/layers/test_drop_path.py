"""Tests for deeplab_video/model/layers/drop_path.py."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.model.layers import drop_path


def test_identity_at_inference():
    layer = drop_path.DropPath(0.5)
    x = tf.random.normal([8, 3, 3, 2])
    np.testing.assert_array_equal(layer(x, training=False), x)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(drop_path.DropPath(1.0)(x, training=True), x)


def test_training_drops_whole_samples_and_rescales():
    tf.random.set_seed(0)
    layer = drop_path.DropPath(0.75)
    x = tf.ones([4000, 2, 2, 3])
    y = layer(x, training=True).numpy()
    per_sample = y.reshape(4000, -1)
    # Every sample is either dropped (0) or kept and scaled by 1 / 0.75.
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.75], rtol=1e-6)
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    kept = np.mean(per_sample[:, 0] > 0)
    assert kept == pytest.approx(0.75, abs=0.03)


def test_training_keeps_dtype():
    y = drop_path.DropPath(0.5, dtype="mixed_bfloat16")(tf.ones([2, 3]), training=True)
    assert y.dtype == tf.bfloat16


def test_schedules():
    assert drop_path.linear_keep_prob(0.8, 0, 4) == pytest.approx(1.0)
    assert drop_path.linear_keep_prob(0.8, 3, 4) == pytest.approx(0.85)
    assert drop_path.linear_keep_prob(0.8, 4, 4) == pytest.approx(0.8)
    np.testing.assert_allclose(drop_path.linspace_keep_probs(0.4, 4), [1.0, 0.8, 0.6, 0.4])
    assert drop_path.linspace_keep_probs(0.4, 1) == [1.0]


@pytest.mark.parametrize("keep_prob", [0.0, -0.5, 1.5])
def test_invalid_keep_prob_raises(keep_prob):
    with pytest.raises(ValueError, match="keep probability"):
        drop_path.DropPath(keep_prob)


def test_config_round_trip():
    layer = drop_path.DropPath(0.7, name="drop")
    clone = drop_path.DropPath.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
