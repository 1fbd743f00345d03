"""Tests of the ASPP layer."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.model.layers import aspp, normalization

_NORM = normalization.BatchNormFactory()


def test_output_shape_and_pooling_branch_sees_the_whole_image():
    layer = aspp.ASPP(8, atrous_rates=(1, 2, 3), norm_layer=_NORM)
    x = tf.random.normal([1, 5, 5, 4], seed=0)
    assert layer(x, training=False).shape == (1, 5, 5, 8)
    far_change = tf.tensor_scatter_nd_update(x, [[0, 4, 4, 0]], [50.0])
    difference = layer(far_change, training=False) - layer(x, training=False)
    # Pixel (0, 0) is beyond every 3x3 branch's reach from (4, 4); only pooling links them.
    assert np.abs(difference.numpy()[0, 0, 0]).max() > 0


def test_needs_three_rates():
    with pytest.raises(ValueError, match="three atrous rates"):
        aspp.ASPP(8, atrous_rates=(6, 12))


def test_get_config_round_trip():
    layer = aspp.ASPP(8, activation="relu", name="aspp")
    x = tf.ones([1, 5, 5, 4])
    output = layer(x, training=False)
    clone = aspp.ASPP.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, training=False), output)
