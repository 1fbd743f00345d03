"""Mask-wise and pixel-wise merging of query masks into one segment map (any frame count).

Both merges work on a flat [num_pixels, num_queries] view of the mask logits, so a clip of
T frames is merged as one canvas (a query's mask is a tube over the clip).

Mask-wise merging (kMaX, DeepLab2 `max_deeplab.py`) pastes binary masks in rank order.
Only class-confident queries can be pasted, so only the binary masks of those C queries
are built (`confident_masks`); the softmax that defines them still runs over all queries.
The greedy paste then needs only the distinct sets of masks that cover a pixel (a clip
has a few hundred) and how many pixels each set covers (`maskwise_owner`), so no work per
mask slot touches the pixels, and nothing is unrolled into the graph.
"""

from typing import NamedTuple

import tensorflow as tf

from deeplab_video.post_processing import op_set

# Logit given to class-unconfident queries in pixel-wise mode (DeepLab2's constant).
MASKED_LOGIT = -99999.0
# Mask-set keys are built 24 bits at a time: float32 matmuls sum powers of two exactly
# below 2**24.
_BITS_PER_WORD = 24


class ConfidentMasks(NamedTuple):
    """The binary masks of the class-confident queries.

    Attributes:
      ids: int32 [C], the confident queries, ascending.
      on: bool [num_pixels, C], the probability of query ids[c] is above mask_threshold.
      probs: float32 [num_pixels, C], the probability of query ids[c] (softmax over all
        queries).
    """

    ids: tf.Tensor
    on: tf.Tensor
    probs: tf.Tensor


def confident_ids(confident: tf.Tensor) -> tf.Tensor:
    """int32 [C]: the indices of the True entries of bool [num_queries] `confident`."""
    return tf.cast(tf.reshape(tf.where(confident), [-1]), tf.int32)


def confident_masks(
    logits: tf.Tensor, confident_logits: tf.Tensor, ids: tf.Tensor, mask_threshold: float
) -> ConfidentMasks:
    """Binary masks (softmax probability > mask_threshold) of the class-confident queries.

    Args:
      logits: float32 [num_pixels, num_queries] mask logits of all queries.
      confident_logits: float32 [num_pixels, C], the columns `ids` of `logits` (the caller
        may have computed them more cheaply, e.g. by resizing only those channels).
      ids: int32 [C], the confident queries (`confident_ids`).
      mask_threshold: probability a pixel needs to be in a query's binary mask.
    """
    normaliser = tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    probs = tf.exp(confident_logits - normaliser)
    return ConfidentMasks(ids=ids, on=probs > mask_threshold, probs=probs)


class MaskSets(NamedTuple):
    """The distinct sets of binary masks that cover a pixel, and their pixel counts.

    Attributes:
      contains: bool [num_sets, C], set s contains mask c.
      counts: float64 [num_sets], pixels covered by exactly the masks of set s (exact
        beyond float32's 2**24, e.g. a 4K clip; float32 under op_set.tflite_builtin_ops).
      set_of_pixel: int32 [num_pixels], the set of each pixel.
    """

    contains: tf.Tensor
    counts: tf.Tensor
    set_of_pixel: tf.Tensor


def _pixel_words(on: tf.Tensor, max_masks: int) -> tf.Tensor:
    """int64 [num_pixels, num_words]: each pixel's masks as bit keys of 24 bits a word.

    Built by one float32 matmul (exact below 2**24) with the powers of two as constants.
    """
    num_words = max(1, -(-max_masks // _BITS_PER_WORD))
    column = tf.range(tf.shape(on)[1])
    powers = tf.constant([float(2 ** (c % _BITS_PER_WORD)) for c in range(max(max_masks, 1))])
    weights = tf.one_hot(column // _BITS_PER_WORD, num_words) * tf.gather(powers, column)[:, None]
    return tf.cast(tf.matmul(tf.cast(on, tf.float32), weights), tf.int64)


def mask_sets(on: tf.Tensor, max_masks: int) -> MaskSets:
    """Groups the pixels by the set of binary masks that cover them.

    Each pixel's set is a bit key (bit c: mask c), built 24 bits at a time
    (`_pixel_words`); the words are folded into one set index by a chain of `unique`
    calls over (index so far, next word) pairs. Under `op_set.tflite_builtin_ops` the
    TFLite builtin variant (`_mask_sets_of_builtin_ops`) gives the same sets.

    Args:
      on: bool [num_pixels, C] binary masks.
      max_masks: static upper bound of C (the number of queries).
    """
    if op_set.builtin_only():
        return _mask_sets_of_builtin_ops(on, max_masks)
    num_words = max(1, -(-max_masks // _BITS_PER_WORD))
    column = tf.range(tf.shape(on)[1])
    pixel_words = _pixel_words(on, max_masks)
    codes = tf.zeros_like(pixel_words[:, 0])
    levels = []
    for w in range(num_words):
        codes = tf.bitwise.left_shift(codes, _BITS_PER_WORD) + pixel_words[:, w]
        values, codes, counts = tf.unique_with_counts(codes, out_idx=tf.int64)
        levels.append(values)
    # Unfold each set's words from the chain of unique values, last word first.
    words = []
    index = tf.range(tf.size(levels[-1], out_type=tf.int64))
    for values in reversed(levels):
        value = tf.gather(values, index)
        words.append(tf.bitwise.bitwise_and(value, (1 << _BITS_PER_WORD) - 1))
        index = tf.bitwise.right_shift(value, _BITS_PER_WORD)
    words = tf.stack(words[::-1], axis=1)  # int64 [num_sets, num_words]
    bits = tf.bitwise.right_shift(
        tf.gather(words, column // _BITS_PER_WORD, axis=1),
        tf.cast(column % _BITS_PER_WORD, tf.int64),
    )
    return MaskSets(
        contains=tf.bitwise.bitwise_and(bits, 1) > 0,
        counts=tf.cast(counts, tf.float64),
        set_of_pixel=tf.cast(codes, tf.int32),
    )


def _mask_sets_of_builtin_ops(on: tf.Tensor, max_masks: int) -> MaskSets:
    """`mask_sets` in TFLite builtin ops; counts are float32 (exact below 2**24 pixels).

    The same chain of `unique` calls over the same keys (a shift by 24 bits is a product
    by 2**24) numbers the sets in the same order; each set's masks are those of its first
    pixel, and its count a segment sum.
    """
    num_words = max(1, -(-max_masks // _BITS_PER_WORD))
    pixel_words = _pixel_words(on, max_masks)
    codes = tf.zeros_like(pixel_words[:, 0])
    for w in range(num_words):
        values, codes = tf.unique(codes * (1 << _BITS_PER_WORD) + pixel_words[:, w], tf.int64)
    set_of_pixel = tf.cast(codes, tf.int32)
    num_sets = tf.size(values)
    first_pixel = tf.math.unsorted_segment_min(
        tf.range(tf.size(set_of_pixel)), set_of_pixel, num_sets
    )
    return MaskSets(
        contains=tf.gather(on, first_pixel),
        counts=tf.math.unsorted_segment_sum(
            tf.ones_like(set_of_pixel, tf.float32), set_of_pixel, num_sets
        ),
        set_of_pixel=set_of_pixel,
    )


def mask_area_and_confidence(
    masks: ConfidentMasks, sets: MaskSets, num_queries: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Binary-mask area and mean probability inside it, per query.

    Returns:
      float32 [num_queries] areas and float32 [num_queries] mask confidences (0 for
      empty masks and for queries that are not class-confident).
    """
    inside = tf.where(masks.on, masks.probs, 0.0)
    total = tf.matmul(tf.ones([1, tf.shape(inside)[0]]), inside)[0]
    return area_and_confidence(sets, masks.ids, total, num_queries)


def area_and_confidence(
    sets: MaskSets, ids: tf.Tensor, probability_sums: tf.Tensor, num_queries: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Areas from the mask sets, and mean probabilities from their sums over the masks.

    Args:
      sets: the sets of the masks of queries `ids`.
      ids: int32 [C], the query of each mask.
      probability_sums: float32 [C], each query's probability summed over its mask.
      num_queries: N.

    Returns:
      float32 [N] areas and float32 [N] mask confidences (0 for empty masks and for the
      queries not in `ids`).
    """
    area = tf.linalg.matvec(
        tf.cast(sets.contains, sets.counts.dtype), sets.counts, transpose_a=True
    )
    area = tf.cast(area, tf.float32)
    index = ids[:, tf.newaxis]
    return (
        tf.scatter_nd(index, area, [num_queries]),
        tf.scatter_nd(index, tf.math.divide_no_nan(probability_sums, area), [num_queries]),
    )


def maskwise_owner(
    ids: tf.Tensor,
    sets: MaskSets,
    area: tf.Tensor,
    area_limit: tf.Tensor,
    rank: tf.Tensor,
    overlap_threshold: float,
) -> tf.Tensor:
    """Mask-wise merging of the ranked binary masks of the confident queries.

    Greedy pasting in rank order keeps mask i iff its pixels not claimed by a KEPT mask of
    better rank pass the overlap and area tests. Pixels covered by the same set of masks
    behave alike, so the paste runs on the distinct sets weighted by their pixel counts.
    Writing keep = F(keep), F(keep)_i depends only on keep_j for better-ranked j, so F has
    exactly one fixed point, the greedy result, and iterating F from any start reaches it
    after at most C + 1 rounds (round r fixes the r best-ranked masks); in practice 2-4.

    Args:
      ids: int32 [C], the query of each mask.
      sets: the sets of masks covering the pixels.
      area: float32 [num_queries], binary-mask area of each query.
      area_limit: float32 [num_queries], minimum unclaimed area of each query.
      rank: int32 [num_queries], 0 for the best-ranked query.
      overlap_threshold: fraction of its area a mask must keep unclaimed.

    Returns:
      int32 [num_pixels]: rank of the query that owns each pixel, num_queries for void.
    """
    num_queries = area.shape[0]
    num_masks = tf.size(ids)
    mask_rank = tf.gather(rank, ids)
    mask_area = tf.gather(area, ids)
    mask_limit = tf.gather(area_limit, ids)
    weights = sets.counts[:, tf.newaxis]

    def owner_rank(keep):
        kept = sets.contains & keep[tf.newaxis, :]
        best = tf.reduce_min(tf.where(kept, mask_rank[tf.newaxis, :], num_queries), axis=1)
        return tf.minimum(best, num_queries)  # The minimum over no masks is int32 max.

    def apply_rule(keep):
        unclaimed = sets.contains & (mask_rank[tf.newaxis, :] <= owner_rank(keep)[:, tf.newaxis])
        new_area = tf.cast(tf.reduce_sum(tf.where(unclaimed, weights, 0.0), axis=0), tf.float32)
        return (new_area > mask_area * overlap_threshold) & (new_area >= mask_limit)

    def step(keep, _):
        next_keep = apply_rule(keep)
        return next_keep, tf.reduce_any(next_keep != keep)

    keep, _ = tf.while_loop(
        lambda keep, changed: changed,
        step,
        (tf.ones([num_masks], tf.bool), tf.constant(True)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([])),
        maximum_iterations=num_queries + 1,
    )
    return op_set.lookup(owner_rank(keep), sets.set_of_pixel)


def pixelwise_owner(
    logits: tf.Tensor,
    confident: tf.Tensor,
    area_limit: tf.Tensor,
    rank: tf.Tensor,
    pixel_confidence_threshold: float,
) -> tf.Tensor:
    """Pixel-wise argmax over class-confident queries, then the per-query area limit.

    Args:
      logits: float32 [num_pixels, num_queries].
      confident: bool [num_queries].
      area_limit: float32 [num_queries].
      rank: int32 [num_queries].
      pixel_confidence_threshold: a pixel is void unless its best confident query's
        probability (softmax over the confident queries) exceeds this.

    Returns:
      int32 [num_pixels]: rank of the owning query, num_queries for void.
    """
    num_queries = logits.shape[-1]
    masked = tf.where(confident[tf.newaxis, :], logits, MASKED_LOGIT)
    best = tf.argmax(masked, axis=1, output_type=tf.int32)
    best_overall = tf.argmax(logits, axis=1, output_type=tf.int32)
    probability = tf.exp(tf.reduce_max(masked, axis=1) - tf.reduce_logsumexp(masked, axis=1))
    solid = (
        (probability > pixel_confidence_threshold)
        & tf.equal(best, best_overall)
        & tf.reduce_any(confident)
    )
    area = tf.math.unsorted_segment_sum(tf.cast(solid, tf.float32), best, num_queries)
    solid &= tf.gather(area >= area_limit, best)
    return tf.where(solid, tf.gather(rank, best), num_queries)


def official_pixelwise_owner(
    kept_logits: tf.Tensor,
    ids: tf.Tensor,
    rank: tf.Tensor,
    pixel_confidence_threshold: float,
) -> tf.Tensor:
    """The official Video-kMaX pixel-wise merge (`panoptic_inference_pixel`).

    The queries left out get logit -9999, so the softmax over all queries is the softmax
    over the kept ones; each pixel goes to its highest-logit kept query when that query's
    probability exceeds the threshold, else it is void. With no kept query the softmax is
    uniform and the argmax is query 0, as in the official code.

    Args:
      kept_logits: float32 [num_pixels, K], the logits of the kept queries `ids`.
      ids: int32 [K], the kept queries, ascending.
      rank: int32 [num_queries].
      pixel_confidence_threshold: the official CLASS_THRESHOLD_THING.

    Returns:
      int32 [num_pixels]: rank of the owning query, num_queries for void.
    """
    num_queries = rank.shape[0]

    def assigned() -> tf.Tensor:
        best = tf.argmax(kept_logits, axis=1, output_type=tf.int32)
        probability = tf.exp(
            tf.reduce_max(kept_logits, axis=1) - tf.reduce_logsumexp(kept_logits, axis=1)
        )
        owner = tf.gather(rank, tf.gather(ids, best))
        return tf.where(probability > pixel_confidence_threshold, owner, num_queries)

    def none_kept() -> tf.Tensor:
        uniform_wins = 1.0 / num_queries > pixel_confidence_threshold
        owner = rank[0] if uniform_wins else tf.constant(num_queries, tf.int32)
        return tf.fill(tf.shape(kept_logits)[:1], owner)

    if ids.shape[0]:  # Statically known to hold queries: no tf.cond.
        return assigned()
    return tf.cond(tf.size(ids) > 0, assigned, none_kept)
