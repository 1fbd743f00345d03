"""TFLite builtin-op stand-ins for the post-processing steps that TFLite cannot convert.

Post-processing uses three TensorFlow ops without a TFLite builtin counterpart, each where
it is the fastest op in TensorFlow:

  tf.math.bincount         panoptic_inference._object_table (segment areas) and
                           object_features._id_histogram (object boxes); in TensorFlow it
                           is ~10x faster than unsorted_segment_sum (2.8 ms vs 31 ms for
                           a 2-megapixel map on this 2-core CPU).
  mask_merging.mask_sets   int64 bit shifts, bitwise_and and unique_with_counts.
  mask_merging.mask_area_and_confidence
                           float64 pixel counts (exact beyond 2**24 pixels).

`builtin_substitutes()` replaces them, while the TFLite export traces its signatures, by
functions of TFLite builtin ops that give the same values: a histogram from
unsorted_segment_sum, mask sets from the same chain of `unique` calls (shifts written
as products) with each set's masks read off its first pixel, and pixel counts in float32,
exact below 2**24 pixels per clip (`MAX_CLIP_PIXELS`; the export checks its frame size).
The SavedModel and the Python runner keep the faster originals. A test pins every
stand-in to its original.
"""

import contextlib
from collections.abc import Iterator
from unittest import mock

import tensorflow as tf

from deeplab_video.post_processing import mask_merging

# float32 counts pixels exactly below this many pixels per clip.
MAX_CLIP_PIXELS = 2**24
# The width of mask_sets' key words, which the stand-in must share.
_BITS_PER_WORD = mask_merging._BITS_PER_WORD


def histogram(
    arr: tf.Tensor,
    weights: tf.Tensor | None = None,
    minlength: int | None = None,
    maxlength: int | None = None,
    dtype: tf.DType = tf.int32,
    **kwargs,
) -> tf.Tensor:
    """tf.math.bincount for a fixed number of bins (minlength == maxlength), unweighted.

    Values outside [0, maxlength) are not counted (bincount drops values >= maxlength
    and rejects negative ones).

    Args:
      arr: int32 tensor of any shape.
      minlength, maxlength: the number of bins: equal Python ints, or one int32 scalar
        tensor passed as both.
      dtype: int32 or float32, the counts' type.

    Returns:
      `dtype` [maxlength], how often each value occurs.

    Raises:
      ValueError: a call that is not of that form (weights, other keyword arguments, or
        an open number of bins).
    """
    fixed = minlength is maxlength or (isinstance(minlength, int) and minlength == maxlength)
    if weights is not None or kwargs or minlength is None or not fixed:
        raise ValueError(
            "The TFLite export counts values only as tf.math.bincount(arr, minlength=n, "
            "maxlength=n, dtype=...)."
        )
    codes = tf.reshape(arr, [-1])
    in_range = (codes >= 0) & (codes < maxlength)
    return tf.math.unsorted_segment_sum(
        tf.cast(in_range, dtype), tf.where(in_range, codes, 0), maxlength
    )


def mask_sets(on: tf.Tensor, max_masks: int) -> mask_merging.MaskSets:
    """mask_merging.mask_sets in TFLite builtin ops; counts are float32.

    The same chain of `unique` calls over the same int64 keys (a shift by 24 bits is a
    product by 2**24) numbers the sets in the same order; each set's masks are those of
    its first pixel, and its count a segment sum.

    Args:
      on: bool [num_pixels, C] binary masks (num_pixels < MAX_CLIP_PIXELS).
      max_masks: static upper bound of C.
    """
    num_words = max(1, -(-max_masks // _BITS_PER_WORD))
    column = tf.range(tf.shape(on)[1])
    powers = tf.constant([float(2 ** (c % _BITS_PER_WORD)) for c in range(max_masks)])
    weights = tf.one_hot(column // _BITS_PER_WORD, num_words) * tf.gather(powers, column)[:, None]
    pixel_words = tf.cast(tf.matmul(tf.cast(on, tf.float32), weights), tf.int64)
    codes = tf.zeros_like(pixel_words[:, 0])
    for w in range(num_words):
        values, codes = tf.unique(codes * (1 << _BITS_PER_WORD) + pixel_words[:, w], tf.int64)
    set_of_pixel = tf.cast(codes, tf.int32)
    num_sets = tf.size(values)
    first_pixel = tf.math.unsorted_segment_min(
        tf.range(tf.size(set_of_pixel)), set_of_pixel, num_sets
    )
    return mask_merging.MaskSets(
        contains=tf.gather(on, first_pixel),
        counts=tf.math.unsorted_segment_sum(
            tf.ones_like(set_of_pixel, tf.float32), set_of_pixel, num_sets
        ),
        set_of_pixel=set_of_pixel,
    )


def mask_area_and_confidence(
    masks: mask_merging.ConfidentMasks, sets: mask_merging.MaskSets, num_queries: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """mask_merging.mask_area_and_confidence on float32 counts (`mask_sets` above).

    Returns:
      float32 [num_queries] areas and float32 [num_queries] mask confidences.
    """
    area = tf.linalg.matvec(tf.cast(sets.contains, tf.float32), sets.counts, transpose_a=True)
    inside = tf.where(masks.on, masks.probs, 0.0)
    total = tf.matmul(tf.ones([1, tf.shape(inside)[0]]), inside)[0]
    index = masks.ids[:, tf.newaxis]
    return (
        tf.scatter_nd(index, area, [num_queries]),
        tf.scatter_nd(index, tf.math.divide_no_nan(total, area), [num_queries]),
    )


@contextlib.contextmanager
def builtin_substitutes() -> Iterator[None]:
    """Within the block, functions traced use the stand-ins above (see the module doc)."""
    with (
        mock.patch.object(tf.math, "bincount", histogram),
        mock.patch.object(mask_merging, "mask_sets", mask_sets),
        mock.patch.object(mask_merging, "mask_area_and_confidence", mask_area_and_confidence),
    ):
        yield
