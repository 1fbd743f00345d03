"""Tests of the depthwise-separable convolution with batch norms."""

import numpy as np
import tensorflow as tf

from deeplab_video.model.layers import separable_conv


def test_shape_and_weights():
    layer = separable_conv.SeparableConvBN(6, kernel_size=3, name="sep")
    output = layer(tf.ones([2, 7, 9, 4]), training=False)
    assert output.shape == (2, 7, 9, 6)
    # Depthwise 3x3x4, its batch norm (4 gammas, 4 betas), pointwise 4x6 and its batch norm.
    shapes = sorted(tuple(w.shape) for w in layer.trainable_weights)
    assert shapes == sorted([(3, 3, 4, 1), (4,), (4,), (1, 1, 4, 6), (6,), (6,)])


def test_get_config_round_trip():
    layer = separable_conv.SeparableConvBN(6, name="sep")
    x = tf.random.normal([1, 5, 5, 4], seed=1)
    output = layer(x, training=False)
    clone = separable_conv.SeparableConvBN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, training=False), output, rtol=1e-6)
