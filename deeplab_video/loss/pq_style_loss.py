"""PQ-style loss of kMaX-DeepLab, on tubes: a mask dice term and a class term.

PQ is recognition quality x segmentation quality; the loss optimises both for every matched
(query, ground-truth tube) pair, each weighted by the other factor as a constant:
  - mask dice term: (1 - dice(query mask, tube mask)) x matched class probability,
  - class term: cross-entropy to the tube's class x matched mask dice.
Unmatched queries are pushed to the void class, weighted by the share of their mask on
void pixels. As in kMaX-DeepLab, both terms use a focal-style alpha: the class term weighs
real classes by alpha and void by 1 - alpha, and the dice term is scaled by
alpha / num_queries. Pixels span all T frames of the clip; void pixels are excluded.

Reference:
  kMaX-DeepLab: "k-means Mask Transformer", ECCV 2022; MaX-DeepLab, CVPR 2021.
"""

import tensorflow as tf

from deeplab_video.loss import loss_utils, tube_matching


def mask_dice_term(
    mask_logits: tf.Tensor,
    match: tube_matching.TubeMatch,
    focal_alpha: float,
    weight_floor: float,
    dice_smooth: float,
) -> tf.Tensor:
    """The dice half of the PQ-style loss.

    Args:
      mask_logits: float32 [batch, num_pixels, num_queries], flattened over the clip.
      match: the query-to-tube matching (from this or from the last decoder layer).
      focal_alpha: weight of real classes in kMaX's focal weighting; scales the term by
        focal_alpha / num_queries.
      weight_floor: lower bound of the matched class probability used as a weight.
      dice_smooth: added to the dice numerator and denominator (the references: 1.0).

    Returns:
      float32 [batch]: sum over matched queries of weight x (1 - dice), x alpha / N.
    """
    num_queries = mask_logits.shape[-1]
    mask_probs = tf.nn.softmax(mask_logits, axis=-1) * match.pixel_valid[:, :, tf.newaxis]
    intersection = tf.reduce_sum(mask_probs * match.query_masks, axis=1)
    denominator = tf.reduce_sum(mask_probs, axis=1) + tf.reduce_sum(match.query_masks, axis=1)
    dice_loss = 1.0 - (2.0 * intersection + dice_smooth) / (denominator + dice_smooth)
    weights = tf.maximum(match.matched_class_prob, weight_floor) * match.matched
    return tf.reduce_sum(dice_loss * weights, axis=1) * (focal_alpha / num_queries)


def class_term(
    class_logits: tf.Tensor,
    match: tube_matching.TubeMatch,
    focal_alpha: float,
    weight_floor: float,
) -> tf.Tensor:
    """The classification half of the PQ-style loss.

    Args:
      class_logits: float32 [batch, num_queries, num_classes + 1]; the last class is void.
      match: the query-to-tube matching.
      focal_alpha: weight of queries whose target is a real class; void targets get
        1 - focal_alpha.
      weight_floor: lower bound of the per-query weights (matched mask dice for matched
        queries, void ratio for unmatched ones): Video-kMaX's no-object weight.

    Returns:
      float32 [batch]: weighted cross-entropy averaged over queries with non-zero loss.
    """
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=match.query_classes, logits=class_logits
    )
    weights = tf.where(
        match.matched > 0.5,
        focal_alpha * tf.maximum(match.matched_mask_dice, weight_floor),
        (1.0 - focal_alpha) * tf.maximum(match.void_ratio, weight_floor),
    )
    return loss_utils.mean_over_nonzero(cross_entropy * weights)
