"""Activation functions by name, as the kMaX-DeepLab layers select them.

DeepLab2's ResNet-50 uses ReLU; its Axial-ResNet-50, ConvNeXt and kMaX decoders use the
exact (erf-based) GELU.
"""

from collections.abc import Callable

import tensorflow as tf

ACTIVATIONS = ("relu", "gelu", "none")


def _exact_gelu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


def _identity(x: tf.Tensor) -> tf.Tensor:
    return x


_FUNCTIONS = {"relu": tf.nn.relu, "gelu": _exact_gelu, "none": _identity}


def get_activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns the activation function called `name`.

    Args:
        name: one of ACTIVATIONS ("none" is the identity).

    Returns:
        A function from a tensor to a tensor of the same shape and dtype.

    Raises:
        ValueError: `name` is not one of ACTIVATIONS.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(ACTIVATIONS)}")
    return _FUNCTIONS[name]
