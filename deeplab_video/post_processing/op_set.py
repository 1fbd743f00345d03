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

The Python runner may also call compiled kernels (`_native_kernels.c`, built by `pip
install`) through tf.numpy_function on a machine without an accelerator: the mask-wise
merge's pixel pass (`native_merge`) and `lookup`, a gather of int32 tables on all cores
(TensorFlow's CPU gather copies one element at a time: ~5 ms for a 720p T = 2 clip
against ~1 ms).
A SavedModel cannot hold such a call, so the serving module traces inside
`graph_ops_only()`, and the TFLite export's switch implies it too.

The switches are context variables read while tracing, so one thread's export never
changes what another thread traces; the SavedModel keeps the fastest graph ops.
"""

import contextlib
import contextvars
import functools
import os
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

try:
    from deeplab_video.post_processing import _native_kernels
except ImportError:  # A source tree without the built extension: TensorFlow ops only.
    _native_kernels = None

# float32 counts pixels exactly below this many pixels per clip.
MAX_CLIP_PIXELS = 2**24

_BUILTIN_ONLY = contextvars.ContextVar("tflite_builtin_ops_only", default=False)
_GRAPH_ONLY = contextvars.ContextVar("tensorflow_graph_ops_only", default=False)


@contextlib.contextmanager
def _switched_on(switch: contextvars.ContextVar) -> Iterator[None]:
    """Sets a switch within the block (in this thread's context only)."""
    token = switch.set(True)
    try:
        yield
    finally:
        switch.reset(token)


def tflite_builtin_ops() -> contextlib.AbstractContextManager[None]:
    """Within the block, post-processing traces TFLite builtin ops only."""
    return _switched_on(_BUILTIN_ONLY)


def builtin_only() -> bool:
    """Whether the code being traced must use TFLite builtin ops only."""
    return _BUILTIN_ONLY.get()


def graph_ops_only() -> contextlib.AbstractContextManager[None]:
    """Within the block, post-processing traces graph ops only (no native kernel)."""
    return _switched_on(_GRAPH_ONLY)


@functools.cache
def _has_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or TPU (fixed for the life of the process)."""
    return any(tf.config.list_physical_devices(kind) for kind in ("GPU", "TPU"))


def native_kernels() -> types.ModuleType | None:
    """The compiled kernels, if built and the code being traced may call them.

    They may be called outside `graph_ops_only()` and `tflite_builtin_ops()` on a
    machine without an accelerator (with a GPU or TPU, the TensorFlow ops run on it).
    """
    if _native_kernels is None or _GRAPH_ONLY.get() or _BUILTIN_ONLY.get():
        return None
    return None if _has_accelerator() else _native_kernels


def native_threads() -> int:
    """Threads of a native kernel: TensorFlow's intra-op thread count if set, else the
    cores this process may use."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return configured
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on.
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# TensorFlow takes a numpy_function's output without a copy when the array is aligned to
# this many bytes (Eigen's largest packet); numpy's allocations are only 16-aligned.
_TENSOR_ALIGNMENT = 64


def aligned_empty(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """np.empty whose data TensorFlow can adopt as a numpy_function output, uncopied."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    buffer = np.empty(size + _TENSOR_ALIGNMENT, np.uint8)
    offset = -buffer.ctypes.data % _TENSOR_ALIGNMENT
    return buffer[offset : offset + size].view(dtype).reshape(shape)


def native_call(
    run: Callable[..., tuple[np.ndarray, int]],
    inputs: list[tf.Tensor],
    dtype: tf.DType,
    shape: list[int | None] | tf.TensorShape,
    errors: Mapping[int, list[Any]],
) -> tf.Tensor:
    """Calls a native kernel through tf.numpy_function, with its errors as assertions.

    Args:
      run: numpy arrays of `inputs` -> (the output array, the kernel's int status).
      inputs: the tensors passed to `run`.
      dtype, shape: the output's.
      errors: the statuses that fail, each with the data of its error message.

    Returns:
      The output; reading it raises InvalidArgumentError (eagerly and in graphs) when the
      status is one of `errors`.
    """
    output, status = tf.numpy_function(
        lambda *arrays: tuple(np.asarray(x) for x in run(*arrays)),
        inputs,
        [dtype, tf.int64],
        stateful=False,
    )
    checks = [
        tf.debugging.Assert(tf.not_equal(status, code), data) for code, data in errors.items()
    ]
    with tf.control_dependencies(checks):
        return tf.ensure_shape(output, shape)


def lookup(
    table: tf.Tensor, index: tf.Tensor, modulus: int = 0, add_index: bool = False
) -> tf.Tensor:
    """table[index], by the native kernel where it may run (else tf.gather).

    With a modulus, the table is indexed by index mod modulus (floor mod), and with
    add_index the index is added to the result: relabelling panoptic values by a table of
    shifts per instance id is one pass.

    Args:
      table: int32 [M].
      index: int32 of any shape, values (mod modulus) in [0, M).
      modulus: 0, or a positive Python int.
      add_index: whether `index` is added to the looked-up values.

    Returns:
      int32 shaped like `index`.

    Raises:
      InvalidArgumentError: (at run time) an index lies outside the table.
    """
    index = tf.convert_to_tensor(index, tf.int32)
    kernels = native_kernels()
    if kernels is None:
        found = tf.gather(table, tf.math.floormod(index, modulus) if modulus else index)
        return found + index if add_index else found

    def run(values: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, int]:
        out = aligned_empty(at.shape, at.dtype)
        return out, kernels.lookup(values, at, modulus, add_index, out, native_threads())

    outside = ["lookup: an index lies outside the table of", tf.size(table)]
    return native_call(run, [table, index], tf.int32, index.shape, {-1: outside})


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
