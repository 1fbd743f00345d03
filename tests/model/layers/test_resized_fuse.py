"""Tests for deeplab_video/model/layers/resized_fuse.py."""

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import normalization, resized_fuse, resizing

_NORM = normalization.BatchNormFactory(False, 0.99, 1e-3)


def test_projects_resizes_and_adds():
    fuse = resized_fuse.ResizedFuse(8, norm_layer=_NORM, name="skip")
    coarse, skip = tf.random.normal([2, 3, 5, 32]), tf.random.normal([2, 5, 9, 16])
    y = fuse((coarse, skip), training=False)
    assert y.shape == (2, 5, 9, 8)
    names = sorted({w.name.split("/")[1] for w in fuse.weights})
    assert names == ["resized_conv_bn1", "resized_conv_bn2"]
    # Oracle from the sublayers: project each (after GELU), resize the coarse one, add.
    gelu = lambda t: tf.nn.gelu(t, approximate=False)  # noqa: E731
    expected = resizing.resize_align_corners(
        fuse._resized_conv_bn1(gelu(coarse)), (5, 9)
    ) + fuse._resized_conv_bn2(gelu(skip))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_matching_widths_skip_projection():
    fuse = resized_fuse.ResizedFuse(8, norm_layer=_NORM)
    coarse, skip = tf.random.normal([1, 3, 3, 8]), tf.random.normal([1, 5, 5, 8])
    y = fuse((coarse, skip))
    assert not fuse.weights
    np.testing.assert_allclose(y, resizing.resize_align_corners(coarse, (5, 5)) + skip, atol=1e-6)


def test_unknown_sizes():
    fuse = resized_fuse.ResizedFuse(8, norm_layer=_NORM)
    y = fuse((tf_keras.Input([None, None, 16]), tf_keras.Input([None, None, 4])))
    assert y.shape.as_list() == [None, None, None, 8]


def test_config_round_trip():
    fuse = resized_fuse.ResizedFuse(8, activation="relu", norm_layer=_NORM, name="skip")
    config = fuse.get_config()
    assert resized_fuse.ResizedFuse.from_config(config).get_config() == config
