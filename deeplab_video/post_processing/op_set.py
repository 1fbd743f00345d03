"""Which ops post-processing traces: a native kernel, TensorFlow's fastest, or TFLite builtins.

Three post-processing steps are fastest in TensorFlow with ops that TFLite has no builtin
kernel for:

  counting ids           tf.math.bincount (panoptic_inference's segment areas,
                         object_features' boxes, video_stitch's joint histogram); in
                         TensorFlow it is ~10x faster than unsorted_segment_sum (2.8 ms
                         against 31 ms for a 2-megapixel map on a 2-core CPU).
  mask sets              int64 bit shifts, bitwise_and and unique_with_counts
                         (mask_merging.mask_sets).
  pixel counts           float64, exact beyond 2**24 pixels (mask_merging).

Functions traced inside `tflite_builtin_ops()` take variants built from TFLite builtin ops
that give the same values: a histogram from unsorted_segment_sum, mask sets from the same
chain of `unique` calls with shifts written as products, and pixel counts in float32,
exact below MAX_CLIP_PIXELS pixels per clip (the TFLite export checks its frame size).
Under the switch, panoptic inference also takes one path without tf.cond: LiteRT's
XNNPACK delegate fails to prepare IF ops whose outputs have run-time shapes.

The Python runner may also call a compiled kernel through tf.numpy_function: the
mask-wise merge's pixel pass (`native_merge`). A SavedModel cannot hold such a call, so
the serving module traces inside `graph_ops_only()`, and the TFLite export's switch
implies it too.

The switches are context variables read while tracing, so one thread's export never
changes what another thread traces; the SavedModel keeps the fastest graph ops.
"""

import contextlib
import contextvars
from collections.abc import Iterator

import tensorflow as tf

# float32 counts pixels exactly below this many pixels per clip.
MAX_CLIP_PIXELS = 2**24

_BUILTIN_ONLY = contextvars.ContextVar("tflite_builtin_ops_only", default=False)
_GRAPH_ONLY = contextvars.ContextVar("tensorflow_graph_ops_only", default=False)


@contextlib.contextmanager
def tflite_builtin_ops() -> Iterator[None]:
    """Within the block, post-processing traces TFLite builtin ops only."""
    token = _BUILTIN_ONLY.set(True)
    try:
        yield
    finally:
        _BUILTIN_ONLY.reset(token)


def builtin_only() -> bool:
    """Whether the code being traced must use TFLite builtin ops only."""
    return _BUILTIN_ONLY.get()


@contextlib.contextmanager
def graph_ops_only() -> Iterator[None]:
    """Within the block, post-processing traces graph ops only (no native kernel)."""
    token = _GRAPH_ONLY.set(True)
    try:
        yield
    finally:
        _GRAPH_ONLY.reset(token)


def native_kernels_allowed() -> bool:
    """Whether the code being traced may call a native kernel (through tf.numpy_function)."""
    return not (_GRAPH_ONLY.get() or _BUILTIN_ONLY.get())


def histogram(values: tf.Tensor, num_bins: int | tf.Tensor, dtype: tf.DType = tf.int32):
    """How often each of 0 .. num_bins - 1 occurs in `values`.

    Values of num_bins and above are not counted; negative values are an error of the
    caller (tf.math.bincount rejects them, the builtin variant drops them).

    Args:
      values: int32 tensor of any shape.
      num_bins: Python int or int32 scalar tensor.
      dtype: int32 or float32, the counts' type.

    Returns:
      `dtype` [num_bins].
    """
    if not builtin_only():
        return tf.math.bincount(values, minlength=num_bins, maxlength=num_bins, dtype=dtype)
    codes = tf.reshape(values, [-1])
    in_range = (codes >= 0) & (codes < num_bins)
    return tf.math.unsorted_segment_sum(
        tf.cast(in_range, dtype), tf.where(in_range, codes, 0), num_bins
    )
