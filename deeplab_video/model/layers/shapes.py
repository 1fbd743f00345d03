"""Static-or-dynamic tensor dimensions, so reshapes keep static shapes when they exist."""

import tensorflow as tf


def dimension(tensor: tf.Tensor, axis: int) -> int | tf.Tensor:
    """The size of `tensor` along `axis`: a Python int when static, else an int32 scalar."""
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]
