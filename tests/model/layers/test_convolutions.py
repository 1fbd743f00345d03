"""Tests for deeplab_video/model/layers/convolutions.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import convolutions, normalization

_NORM = normalization.BatchNormFactory(False, 0.99, 1e-3)


def _numpy_conv(x, kernel, stride, pad):
    """Plain cross-correlation with symmetric zero padding `pad`; x [H, W, C]."""
    size = kernel.shape[0]
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out_h = (x.shape[0] - size) // stride + 1
    out_w = (x.shape[1] - size) // stride + 1
    out = np.zeros((out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[i * stride : i * stride + size, j * stride : j * stride + size]
            out[i, j] = np.einsum("hwc,hwco->o", patch, kernel)
    return out


def test_1x1_conv_matches_numpy_dot():
    layer = convolutions.Conv2DSame(5, 1, "conv1x1", use_bias=True)
    x = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    y = layer(x).numpy()
    kernel, bias = layer.weights
    expected = np.dot(x, kernel.numpy()[0, 0]) + bias.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size, stride", [(3, 2), (7, 2), (3, 1)])
def test_padding_is_symmetric(kernel_size, stride):
    layer = convolutions.Conv2DSame(2, kernel_size, "conv", strides=stride, use_bias=False)
    x = np.random.default_rng(1).normal(size=(1, 9, 11, 3)).astype(np.float32)
    y = layer(x).numpy()[0]
    expected = _numpy_conv(x[0], layer.weights[0].numpy(), stride, (kernel_size - 1) // 2)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "size, stride, expected", [(65, 2, 33), (33, 4, 9), (64, 2, 32), (4225, 2, 2113)]
)
def test_strided_output_size(size, stride, expected):
    layer = convolutions.Conv2DSame(4, 7, "stem", strides=stride, use_bias=False)
    inputs = tf_keras.Input([size, 3, 3])
    assert layer(inputs).shape.as_list() == [None, expected, (3 - 1) // stride + 1, 4]


def test_zero_gamma_batch_norm_outputs_beta():
    layer = convolutions.Conv2DSame(
        4,
        3,
        "conv3_bn",
        use_bias=False,
        use_bn=True,
        norm_layer=_NORM,
        bn_gamma_initializer="zeros",
        activation="relu",
    )
    y = layer(tf.random.normal([2, 5, 5, 3]), training=True)
    np.testing.assert_array_equal(y.numpy(), 0.0)


def test_bias_with_batch_norm_raises():
    with pytest.raises(ValueError, match="takes no bias"):
        convolutions.Conv2DSame(4, 3, "bad", use_bias=True, use_bn=True)


def test_config_round_trip():
    layer = convolutions.Conv2DSame(
        8,
        3,
        "conv2_bn_act",
        strides=2,
        atrous_rate=1,
        use_bias=False,
        use_bn=True,
        norm_layer=_NORM,
        activation="gelu",
    )
    config = layer.get_config()
    clone = convolutions.Conv2DSame.from_config(config)
    assert clone.get_config() == config
    assert tf_keras.utils.get_registered_name(convolutions.Conv2DSame) == (
        "deeplab_video>Conv2DSame"
    )


def test_symmetric_padding():
    assert convolutions.symmetric_padding(3, 1) == (1, 1)
    assert convolutions.symmetric_padding(3, 2) == (2, 2)
    assert convolutions.symmetric_padding(4, 1) == (1, 2)
