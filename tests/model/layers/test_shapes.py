"""Tests for deeplab_video/model/layers/shapes.py."""

import tensorflow as tf

from deeplab_video.model.layers import shapes


def test_static_dimension_is_an_int():
    assert shapes.dimension(tf.zeros([2, 5, 3]), 1) == 5


def test_dynamic_dimension_is_a_tensor():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3])])
    def height(x):
        value = shapes.dimension(x, 1)
        assert isinstance(value, tf.Tensor)
        return value

    assert int(height(tf.zeros([2, 7, 3]))) == 7
