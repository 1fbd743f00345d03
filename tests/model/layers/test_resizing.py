"""Tests for deeplab_video/model/layers/resizing.py."""

import numpy as np
import tensorflow as tf

from deeplab_video.model.layers import resizing


def test_align_corners_upsampling_by_hand():
    # 3 -> 5 samples with aligned corners: inputs land on even outputs, odd ones average.
    x = tf.constant([0.0, 2.0, 6.0])[None, :, None, None] * tf.ones([1, 1, 3, 1])
    y = resizing.resize_align_corners(x, (5, 3)).numpy()[0, :, 0, 0]
    np.testing.assert_allclose(y, [0.0, 1.0, 2.0, 4.0, 6.0])


def test_matches_numpy_interpolation_on_both_axes():
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype(np.float32)
    y = resizing.resize_align_corners(tf.constant(x), (7, 9)).numpy()
    rows = np.linspace(0, 3, 7)
    cols = np.linspace(0, 4, 9)
    along_w = np.stack(
        [
            np.interp(cols, np.arange(5), x[b, r, :, c])
            for b in range(2)
            for r in range(4)
            for c in range(3)
        ]
    ).reshape(2, 4, 3, 9)
    expected = (
        np.stack(
            [
                np.interp(rows, np.arange(4), along_w[b, :, c, j])
                for b in range(2)
                for c in range(3)
                for j in range(9)
            ]
        )
        .reshape(2, 3, 9, 7)
        .transpose(0, 3, 2, 1)
    )
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_same_size_is_identity_and_dtype_is_kept():
    x = tf.random.normal([1, 5, 5, 2])
    assert resizing.resize_align_corners(x, (5, 5)) is x
    y = resizing.resize_align_corners(tf.cast(x, tf.bfloat16), (9, 9))
    assert y.dtype == tf.bfloat16 and y.shape == (1, 9, 9, 2)


def test_dynamic_size_under_jit():
    resize = tf.function(
        lambda t, ref: resizing.resize_align_corners(t, (tf.shape(ref)[1], tf.shape(ref)[2])),
        jit_compile=True,
    )
    y = resize(tf.ones([1, 3, 3, 1]), tf.zeros([1, 5, 5, 1]))
    np.testing.assert_allclose(y, np.ones([1, 5, 5, 1]))
