"""Mask-wise and pixel-wise merging of query masks into one segment map (any frame count).

Both merges work on a flat [num_pixels, num_queries] view of the mask logits, so a clip of
T frames is merged as one canvas (a query's mask is a tube over the clip).

Mask-wise merging (kMaX, DeepLab2 `max_deeplab.py`) pastes binary masks in rank order. With
mask probabilities from a softmax over queries, a pixel lies in at most k binary masks
(`masks_per_pixel`), so one top_k gives every pixel's candidates and the greedy paste is
solved as a fixed point over them (`maskwise_owner`) instead of a loop over mask slots.
"""

import math
from typing import NamedTuple

import tensorflow as tf

# Logit given to class-unconfident queries in pixel-wise mode (DeepLab2's constant).
_MASKED_LOGIT = -99999.0


def masks_per_pixel(mask_threshold: float, num_queries: int) -> int:
    """How many softmax probabilities of one pixel can exceed `mask_threshold` at once.

    k probabilities above t need k * t < 1, so k <= ceil(1 / t) - 1; a small margin keeps
    the bound safe against float rounding (a larger k only costs time).
    """
    if mask_threshold <= 0.0:
        return num_queries
    return max(1, min(num_queries, math.ceil(1.0 / mask_threshold * (1.0 + 1e-4)) - 1))


class MaskCandidates(NamedTuple):
    """The (at most k) binary masks covering each pixel, from one top_k over queries.

    Attributes:
      probs: float32 [num_pixels, k], softmax probability of each candidate query.
      ids: int32 [num_pixels, k], the candidate queries.
      on: bool [num_pixels, k], probability above mask_threshold (pixel in the mask).
    """

    probs: tf.Tensor
    ids: tf.Tensor
    on: tf.Tensor


def mask_candidates(logits: tf.Tensor, mask_threshold: float) -> MaskCandidates:
    """Every pixel's queries with probability above `mask_threshold`, without a full softmax.

    Args:
      logits: float32 [num_pixels, num_queries] mask logits.
      mask_threshold: probability a pixel needs to be in a query's binary mask.
    """
    k = masks_per_pixel(mask_threshold, logits.shape[-1])
    top_logits, ids = tf.math.top_k(logits, k=k, sorted=False)
    probs = tf.exp(top_logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True))
    return MaskCandidates(probs=probs, ids=ids, on=probs > mask_threshold)


def mask_area_and_confidence(
    candidates: MaskCandidates, num_queries: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Binary-mask area and mean probability inside it, per query.

    Returns:
      float32 [num_queries] areas and float32 [num_queries] mask confidences (0 if empty).
    """
    on = tf.cast(candidates.on, tf.float32)
    area = tf.math.unsorted_segment_sum(on, candidates.ids, num_queries)
    total = tf.math.unsorted_segment_sum(candidates.probs * on, candidates.ids, num_queries)
    return area, tf.math.divide_no_nan(total, area)


def maskwise_owner(
    candidates: MaskCandidates,
    area: tf.Tensor,
    confident: tf.Tensor,
    area_limit: tf.Tensor,
    rank: tf.Tensor,
    overlap_threshold: float,
) -> tf.Tensor:
    """Mask-wise merging of ranked binary masks, without a loop over slots.

    Greedy pasting keeps query i iff it is confident and its pixels not claimed by a
    KEPT query of better rank pass the overlap and area tests. Writing keep = F(keep),
    F(keep)_i depends only on keep_j for rank_j < rank_i, so F has exactly one fixed point,
    the greedy result, and iterating F from any start reaches it after at most
    num_queries + 1 rounds (round r fixes the r best-ranked queries); in practice 2-4.
    Each round is one pass over the pixels' k candidates (`masks_per_pixel`).

    Args:
      candidates: the binary masks covering each pixel.
      area: float32 [num_queries], binary-mask area of each query.
      confident: bool [num_queries], class confidence passes its thing/stuff threshold.
      area_limit: float32 [num_queries], minimum unclaimed area of each query.
      rank: int32 [num_queries], 0 for the best-ranked query.
      overlap_threshold: fraction of its area a query must keep unclaimed.

    Returns:
      int32 [num_pixels]: rank of the query that owns each pixel, num_queries for void.
    """
    num_queries = area.shape[0]
    ids, on = candidates.ids, candidates.on
    top_rank = tf.where(on, tf.gather(rank, ids), num_queries)

    def owner_rank(keep):
        kept = on & tf.gather(keep, ids)
        return tf.reduce_min(tf.where(kept, top_rank, num_queries), axis=1)

    def apply_rule(keep):
        unclaimed = on & (top_rank <= owner_rank(keep)[:, tf.newaxis])
        new_area = tf.math.unsorted_segment_sum(
            tf.cast(unclaimed, tf.float32), ids, num_segments=num_queries
        )
        return confident & (new_area > area * overlap_threshold) & (new_area >= area_limit)

    def step(keep, _):
        next_keep = apply_rule(keep)
        return next_keep, tf.reduce_any(next_keep != keep)

    keep, _ = tf.while_loop(
        lambda keep, changed: changed,
        step,
        (confident, tf.constant(True)),
        maximum_iterations=num_queries + 1,
    )
    return owner_rank(keep)


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
    masked = tf.where(confident[tf.newaxis, :], logits, _MASKED_LOGIT)
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
