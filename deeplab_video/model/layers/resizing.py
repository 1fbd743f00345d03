"""Bilinear resizing with aligned corners, as DeepLab2 resizes features of size 4k+1.

With aligned corners the first and last pixels of input and output coincide, so a feature
of size (n - 1) / s + 1 upsampled to n - 1 + 1 samples exactly the positions of the
stride-s grid it came from.
"""

import tensorflow as tf


def resize_align_corners(
    images: tf.Tensor, size: tuple[int | tf.Tensor, int | tf.Tensor]
) -> tf.Tensor:
    """Bilinearly resizes with align_corners=True (tf.compat.v1 semantics).

    Args:
        images: float [batch, height, width, channels] (float16 and bfloat16 are resized in
            float32 and cast back).
        size: (new_height, new_width), ints or int32 scalars.

    Returns:
        images.dtype [batch, new_height, new_width, channels]; the input itself when the
        static size already matches.
    """
    if images.shape[1] == size[0] and images.shape[2] == size[1]:
        return images
    # The op behind tf.compat.v1.image.resize_bilinear, which logs a deprecation warning.
    resized = tf.raw_ops.ResizeBilinear(
        images=tf.cast(images, tf.float32),
        size=tf.stack(size),
        align_corners=True,
        half_pixel_centers=False,
    )
    return tf.cast(resized, images.dtype)
