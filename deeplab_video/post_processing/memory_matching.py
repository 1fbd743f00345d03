"""Scores and assignment of the memory buffer's decoding step (LA-MB and naive-MB).

LA-MB (Video-kMaX, Shin et al., WACV 2024, Sec. 3.2 and supplementary Algorithm 1) scores
a detection i against a memory entry j by appearance and location:

    f(i, j) = cos(q_i, q_hat_j) * exp(-d(b_i, b_hat_j) / temperature)

with d the L2 distance of the normalised xyxy boxes (as the official `lamb_module.py`,
MemoryBufferOptions.box_distance "l2") or its square (as written in Algorithm 1,
"squared_l2"; squared distances of normalised boxes are smaller, so the same temperature
penalises motion less). naive-MB scores by the cosine alone.

Assignment "hungarian" maximises the total score one-to-one with the exact solver shared
with the loss (`loss/matching.py`); pairs ruled out beforehand (below the threshold,
different class, entry claimed) count as unmatched (score 0) instead of being solved and
dropped afterwards as the official code does. "argmax" is Algorithm 1's per-object
argmax; when several objects pick the same entry, the best-scoring one gets it and the
others stay unmatched, so ids stay unique.
"""

import tensorflow as tf

from deeplab_video import config
from deeplab_video.loss import matching


def association_scores(
    boxes: tf.Tensor,
    embeddings: tf.Tensor,
    memory_boxes: tf.Tensor,
    memory_embeddings: tf.Tensor,
    location_aware: bool = True,
    squared_distance: bool = False,
    temperature: float | tf.Tensor = 1.0,
) -> tf.Tensor:
    """Scores f(i, j) of every (detection, memory entry) pair.

    Args:
      boxes: float32 [N, 4] normalised xyxy.
      embeddings: float32 [N, D].
      memory_boxes: float32 [M, 4].
      memory_embeddings: float32 [M, D].
      location_aware: LA-MB (True) or naive-MB (False).
      squared_distance: use the squared L2 box distance ("squared_l2").
      temperature: T of the location term (float or scalar tensor).

    Returns:
      float32 [N, M]: cosine similarity, times exp(-distance / temperature) for LA-MB.
    """
    cosine = tf.matmul(
        tf.math.l2_normalize(embeddings, axis=-1),
        tf.math.l2_normalize(memory_embeddings, axis=-1),
        transpose_b=True,
    )
    if not location_aware:
        return cosine
    squared = tf.reduce_sum(
        tf.math.squared_difference(boxes[:, tf.newaxis, :], memory_boxes[tf.newaxis, :, :]),
        axis=-1,
    )
    distance = squared if squared_distance else tf.sqrt(squared)
    return cosine * tf.exp(-distance / temperature)


def _hungarian(scores: tf.Tensor, allowed: tf.Tensor) -> tf.Tensor:
    """One-to-one assignment maximising the summed score of allowed pairs.

    A detection and an entry that are allowed only for each other form a component of
    their own, where matching them is optimal: they are matched directly. The exact
    solver gets the rest, the rows and columns with competing allowed pairs (typically a
    few look-alikes), which keeps its O(rows^2 * cols) loop small.

    Args:
      scores: float32 [N, M].
      allowed: bool [N, M].

    Returns:
      int32 [N]: the entry matched to each detection, or -1.
    """
    as_int = tf.cast(allowed, tf.int32)
    isolated = (
        allowed
        & tf.equal(tf.reduce_sum(as_int, axis=1, keepdims=True), 1)
        & tf.equal(tf.reduce_sum(as_int, axis=0, keepdims=True), 1)
    )
    column = tf.range(tf.shape(scores)[1])[tf.newaxis, :]
    # The maximum over an empty axis is the lowest int32, hence the outer maximum.
    direct = tf.maximum(tf.reduce_max(tf.where(isolated, column, -1), axis=1), -1)
    contested = allowed & ~isolated
    rows = tf.cast(tf.where(tf.reduce_any(contested, axis=1))[:, 0], tf.int32)
    cols = tf.cast(tf.where(tf.reduce_any(contested, axis=0))[:, 0], tf.int32)
    sub_allowed = tf.gather(tf.gather(contested, rows), cols, axis=1)
    sub_scores = tf.where(sub_allowed, tf.gather(tf.gather(scores, rows), cols, axis=1), 0.0)
    row_to_col, _ = matching.linear_sum_assignment_2d(sub_scores, maximize=True)
    safe_col = tf.maximum(row_to_col, 0)
    kept = (row_to_col >= 0) & tf.gather(sub_allowed, safe_col, batch_dims=1)
    row_slots = tf.where(kept, tf.gather(cols, safe_col), -1)
    return tf.tensor_scatter_nd_update(direct, rows[:, tf.newaxis], row_slots)


def _argmax(scores: tf.Tensor, allowed: tf.Tensor) -> tf.Tensor:
    """Per-detection argmax; an entry picked twice goes to the higher score.

    Args:
      scores: float32 [N, M].
      allowed: bool [N, M].

    Returns:
      int32 [N]: the entry matched to each detection, or -1.
    """
    masked = tf.where(allowed, scores, -float("inf"))
    best = tf.argmax(masked, axis=1, output_type=tf.int32)
    has = tf.reduce_any(allowed, axis=1)
    claims = has[:, tf.newaxis] & tf.equal(best[:, tf.newaxis], tf.range(tf.shape(scores)[1]))
    claim_scores = tf.where(claims, tf.reduce_max(masked, axis=1, keepdims=True), -float("inf"))
    top = claims & tf.equal(claim_scores, tf.reduce_max(claim_scores, axis=0, keepdims=True))
    rows = tf.range(tf.shape(scores)[0])
    winner = tf.reduce_min(tf.where(top, rows[:, tf.newaxis], tf.shape(scores)[0]), axis=0)
    won = has & tf.equal(tf.gather(winner, best), rows)
    return tf.where(won, best, -1)


def assign(scores: tf.Tensor, allowed: tf.Tensor, assignment: str = "hungarian") -> tf.Tensor:
    """Matches detections to memory entries among the allowed pairs.

    Args:
      scores: float32 [N, M], association scores.
      allowed: bool [N, M], pairs that may match.
      assignment: "hungarian" (one-to-one, maximum total score) or "argmax".

    Returns:
      int32 [N]: the entry matched to each detection, or -1.

    Raises:
      ValueError: on an unknown assignment.
    """
    if assignment not in config.ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {config.ASSIGNMENTS}; got '{assignment}'.")
    return (_hungarian if assignment == "hungarian" else _argmax)(scores, allowed)
