"""The mask-wise merge's pixel pass as one fused native kernel (the Python runner's path).

At input resolution the pixel pass of kMaX's mask-wise merge (resize every query's
logits, softmax over the queries, binary masks of the confident queries, the sets of
masks covering each pixel and their pixel counts, each mask's probability sum) is a
dozen TensorFlow ops over [num_pixels, num_queries] tensors: ~120 ms for a 720p T = 2
clip of 16 queries on a 2-core CPU, more than the tiny network. `_native_kernels.c`
does it in one pass over rows that stay in cache, on all cores (~21 ms).

Results equal the TensorFlow ops': the kernel resizes exactly as TensorFlow's CPU
ResizeBilinear does, and it leaves the few pixels whose "probability > mask_threshold"
test lies within rounding of the threshold undecided, with their resized logits; they
are decided here with the TensorFlow ops of `mask_merging.confident_masks`, on rows
padded so that they round as in the clip's tensor (`decide_undecided`). The kernel
reports non-finite logits (and any pixel with more masks than a softmax allows), upon
which the caller takes the TensorFlow ops for the clip.

A pixel's set of masks is a code: its masks' queries q1 < q2 < ... folded as
code * (N + 1) + (q + 1). A softmax gives at most floor(1 / mask_threshold) queries a
probability above the threshold, which bounds the codes; the kernel is used when they
number at most MAX_CODES. It runs where `op_set.native_kernels()` allows (built by
`pip install`, not in a SavedModel, no accelerator); elsewhere the TensorFlow ops run.
"""

import math
import types
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from deeplab_video.post_processing import mask_merging, op_set

# Largest number of set codes ((N + 1) ** max_masks) the kernel counts in a dense table.
MAX_CODES = 2**22
# Up to this many codes, every code is a set of the merge (no renumbering of the pixels);
# above (e.g. 128 queries: 129 ** 2 codes), only the codes that occur.
MAX_DENSE_SETS = 4096
# Rows the undecided pixels are padded to a multiple of: whole SIMD packets (16 floats,
# AVX-512) of every op, whatever the number of queries.
_PACKET_ROWS = 16
# Pixels per clip the kernel may leave undecided (a few dozen in practice); more fall
# back to the TensorFlow ops.
UNDECIDED_CAPACITY = 2**16


def max_masks_per_pixel(mask_threshold: float) -> int:
    """How many probabilities of one softmax can exceed `mask_threshold` (with rounding)."""
    return math.floor(1.001 / mask_threshold) if mask_threshold > 0 else 0


def usable(num_queries: int, mask_threshold: float) -> bool:
    """Whether the kernel may run in this trace (`op_set.native_kernels`) and bounds these
    codes."""
    if op_set.native_kernels() is None:
        return False
    max_masks = max_masks_per_pixel(mask_threshold)
    return 0 < max_masks and (num_queries + 1) ** max_masks <= MAX_CODES


class PixelPass(NamedTuple):
    """What the kernel returns for one clip (N queries, P pixels, D codes, B undecided).

    Attributes:
      status: int64 [], B, or negative when the TensorFlow ops must be used instead.
      codes: int32 [P], each pixel's set code; -1 for the undecided pixels.
      counts: int64 [D], decided pixels of each code.
      prob_sums: float64 [N], each query's probability summed over its decided pixels.
      undecided_pixels: int32 [B], flat indices of the undecided pixels, ascending.
      undecided_logits: float32 [B, N], their resized logits.
    """

    status: tf.Tensor
    codes: tf.Tensor
    counts: tf.Tensor
    prob_sums: tf.Tensor
    undecided_pixels: tf.Tensor
    undecided_logits: tf.Tensor


def _run_kernel(
    kernels: types.ModuleType,
    logits: np.ndarray,
    kept: np.ndarray,
    canvas: tuple[int, int],
    image: tuple[int, int],
    mask_threshold: float,
) -> tuple[np.ndarray, ...]:
    """Calls the kernels' maskwise_pixels on numpy arrays; returns PixelPass's fields."""
    num_frames, height, width, num_queries = logits.shape
    max_masks = max_masks_per_pixel(mask_threshold)
    codes = op_set.aligned_empty(num_frames * image[0] * image[1], np.int32)
    counts = np.empty((num_queries + 1) ** max_masks, np.int64)
    prob_sums = np.empty(num_queries, np.float64)
    pixels = np.empty(UNDECIDED_CAPACITY, np.int32)
    undecided = np.empty((UNDECIDED_CAPACITY, num_queries), np.float32)
    status = kernels.maskwise_pixels(
        np.ascontiguousarray(logits, np.float32),
        np.ascontiguousarray(kept, np.uint8),
        num_frames,
        height,
        width,
        num_queries,
        *canvas,
        *image,
        mask_threshold,
        max_masks,
        op_set.native_threads(),
        codes,
        counts,
        prob_sums,
        pixels,
        undecided,
    )
    found = max(status, 0)
    return np.int64(status), codes, counts, prob_sums, pixels[:found], undecided[:found]


def pixel_pass(
    mask_logits: tf.Tensor,
    kept: tf.Tensor,
    canvas: tuple[int, int],
    image: tuple[int, int],
    mask_threshold: float,
) -> PixelPass:
    """Runs the kernel on one clip's stride-4 logits (see the module docstring).

    Args:
      mask_logits: float32 [T, h, w, N], stride-4 logits of the canvas.
      kept: bool [N], the class-confident queries.
      canvas: (height, width) ints, the network input the logits cover.
      image: (height, width) ints, the image in the canvas' top-left corner; the merge
        runs on it at this size.
      mask_threshold: probability a pixel needs to be in a query's binary mask.
    """
    kernels = op_set.native_kernels()  # As allowed where this is traced (see `usable`).
    num_queries = mask_logits.shape[-1]
    num_pixels = mask_logits.shape[0] * image[0] * image[1]
    outputs = tf.numpy_function(
        lambda logits, keep: _run_kernel(kernels, logits, keep, canvas, image, mask_threshold),
        [mask_logits, kept],
        [tf.int64, tf.int32, tf.int64, tf.float64, tf.int32, tf.float32],
        stateful=False,
    )
    shapes = (
        [],
        [num_pixels],
        [(num_queries + 1) ** max_masks_per_pixel(mask_threshold)],
        [num_queries],
        [None],
        [None, num_queries],
    )
    return PixelPass(*(tf.ensure_shape(t, s) for t, s in zip(outputs, shapes, strict=True)))


def _fold_codes(on: tf.Tensor, max_masks: int) -> tf.Tensor:
    """int32 [B]: the set codes of bool [B, N] masks with at most max_masks on per row."""
    num_queries = on.shape[-1]
    # Masks of later queries on the same row: the power of (N + 1) of each query's digit
    # (clipped where the query's own mask is off and the digit is dropped).
    later = tf.cumsum(tf.cast(on, tf.int32), axis=1, exclusive=True, reverse=True)
    later = tf.minimum(later, max_masks - 1)
    powers = tf.constant([(num_queries + 1) ** k for k in range(max_masks)], tf.int32)
    digits = tf.where(on, tf.range(1, num_queries + 1)[tf.newaxis, :] * tf.gather(powers, later), 0)
    return tf.reduce_sum(digits, axis=1)


def _decode_sets(codes: tf.Tensor, ids: tf.Tensor, num_queries: int, max_masks: int) -> tf.Tensor:
    """bool [S, C]: which confident queries `ids` each set code holds."""
    digits = tf.stack(
        [(codes // (num_queries + 1) ** k) % (num_queries + 1) for k in range(max_masks)], axis=1
    )
    return tf.reduce_any(digits[:, :, tf.newaxis] == ids[tf.newaxis, tf.newaxis, :] + 1, axis=1)


class Undecided(NamedTuple):
    """The kernel's undecided pixels, decided as `mask_merging.confident_masks` does.

    Attributes:
      valid: bool [], whether the kernel's result holds (else the TensorFlow ops run).
      on: bool [B, N], the binary masks of the confident queries at those pixels.
      probs: float32 [B, N], the probabilities (softmax over all queries).
    """

    valid: tf.Tensor
    on: tf.Tensor
    probs: tf.Tensor


def decide_undecided(result: PixelPass, kept: tf.Tensor, mask_threshold: float) -> Undecided:
    """Decides the kernel's undecided pixels with the TensorFlow ops of the other path.

    Eigen computes exp and log in SIMD packets but the last elements of a tensor that do
    not fill a packet one by one, which can round one unit differently; the rows are
    padded to whole packets so that every row is computed as in the clip's tensor (whose
    size is a multiple of the packet but for clips of other sizes, where only its very
    last pixel could still differ by a unit in its probability).

    Args:
      result: the kernel's PixelPass.
      kept: bool [N], the class-confident queries.
      mask_threshold: as for `pixel_pass`.
    """
    num_rows = tf.shape(result.undecided_logits)[0]
    padding = -num_rows % _PACKET_ROWS
    logits = tf.pad(result.undecided_logits, [[0, padding], [0, 0]])
    normaliser = tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    probs = tf.exp(logits - normaliser)[:num_rows]
    on = (probs > mask_threshold) & kept[tf.newaxis, :]
    most = tf.reduce_max(tf.reduce_sum(tf.cast(on, tf.int32), axis=1))  # int32 min if B = 0
    valid = (result.status >= 0) & (most <= max_masks_per_pixel(mask_threshold))
    return Undecided(valid, on, probs)


def mask_sets(
    result: PixelPass, undecided: Undecided, ids: tf.Tensor, mask_threshold: float
) -> tuple[mask_merging.MaskSets, tf.Tensor]:
    """The sets of masks of a valid kernel result, and each query's probability sum.

    Args:
      result: the kernel's PixelPass (status >= 0).
      undecided: its undecided pixels, decided (`decide_undecided`; valid).
      ids: int32 [C], the confident queries (`mask_merging.confident_ids`).
      mask_threshold: as for `pixel_pass`.

    Returns:
      (the MaskSets of the masks `ids`: every code up to MAX_DENSE_SETS codes, else the
      codes that occur, ascending; float32 [C], each confident query's probability summed
      over its binary mask).
    """
    num_queries = undecided.on.shape[-1]
    max_masks = max_masks_per_pixel(mask_threshold)
    undecided_codes = _fold_codes(undecided.on, max_masks)
    codes = tf.tensor_scatter_nd_update(
        result.codes, result.undecided_pixels[:, tf.newaxis], undecided_codes
    )
    num_codes = result.counts.shape[0]
    counts = result.counts + tf.math.bincount(
        undecided_codes, minlength=num_codes, maxlength=num_codes, dtype=tf.int64
    )
    prob_sums = result.prob_sums + tf.reduce_sum(
        tf.cast(tf.where(undecided.on, undecided.probs, 0.0), tf.float64), axis=0
    )
    probability_sums = tf.cast(tf.gather(prob_sums, ids), tf.float32)
    if num_codes <= MAX_DENSE_SETS:
        # Every code is a set (most of them empty: no pixels, no weight in the merge), so
        # the pixels' codes are their sets as they are.
        sets = mask_merging.MaskSets(
            contains=_decode_sets(tf.range(num_codes), ids, num_queries, max_masks),
            counts=tf.cast(counts, tf.float64),
            set_of_pixel=codes,
        )
        return sets, probability_sums
    set_codes = tf.cast(tf.reshape(tf.where(counts > 0), [-1]), tf.int32)
    set_index = tf.scatter_nd(set_codes[:, tf.newaxis], tf.range(tf.size(set_codes)), [num_codes])
    sets = mask_merging.MaskSets(
        contains=_decode_sets(set_codes, ids, num_queries, max_masks),
        counts=tf.cast(tf.gather(counts, set_codes), tf.float64),
        set_of_pixel=op_set.lookup(set_index, codes),
    )
    return sets, probability_sums
