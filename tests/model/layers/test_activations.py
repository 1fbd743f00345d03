"""Tests for deeplab_video/model/layers/activations.py."""

import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.model.layers import activations


def test_values_by_hand():
    x = tf.constant([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(activations.get_activation("relu")(x), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(activations.get_activation("none")(x), [-1.0, 0.0, 2.0])
    # Exact GELU: x * Phi(x).
    expected = [v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in (-1.0, 0.0, 2.0)]
    np.testing.assert_allclose(activations.get_activation("gelu")(x), expected, rtol=1e-6)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu, gelu, none"):
        activations.get_activation("swish")
