"""Matches predicted tubes (queries) to ground-truth tubes, as kMaX-DeepLab's PQ-style loss.

The similarity of query n and ground-truth tube g is the product of
  - the query's predicted probability of the tube's class, and
  - the dice between the query's soft mask (softmax over queries, per pixel) and the tube's
    mask, both over all T frames of the clip and over non-void pixels only.
The Hungarian solver (`matching.linear_sum_assignment`) maximises the total similarity.
Everything here is a training target: it is computed under `tf.stop_gradient`.

References:
  kMaX-DeepLab: "k-means Mask Transformer", ECCV 2022 (Qihang Yu et al.).
  Video-kMaX: "A Simple Unified Approach for Online and Near-Online Video Panoptic
  Segmentation", WACV 2024 (Inkyu Shin et al.).
"""

from typing import NamedTuple

import tensorflow as tf

from deeplab_video.loss import loss_utils, matching

# Matching cost of a padding tube. Real costs (-similarity) lie in [-1, 0], so a padding tube
# never takes a query from a real tube, and its own match is discarded.
_PADDING_TUBE_COST = 1.0


class ClipTargets(NamedTuple):
    """Ground truth of a batch of clips, flattened over frames and pixels.

    Attributes:
      gt_masks: float32 [batch, num_pixels, num_tubes], binary tube masks with void pixels
        and padding tubes zeroed.
      tube_classes: int32 [batch, num_tubes], semantic class of every tube.
      tube_valid: float32 [batch, num_tubes], 1 for real tubes with at least one non-void
        pixel in the clip, 0 otherwise.
      pixel_valid: float32 [batch, num_pixels], 1 on non-void pixels covered by a real tube.
    """

    gt_masks: tf.Tensor
    tube_classes: tf.Tensor
    tube_valid: tf.Tensor
    pixel_valid: tf.Tensor


class TubeMatch(NamedTuple):
    """The matching of queries to ground-truth tubes and the targets it implies.

    Attributes:
      query_to_tube: int32 [batch, num_queries], the matched tube or -1.
      matched: float32 [batch, num_queries], 1 for queries matched to a real tube.
      query_masks: float32 [batch, num_pixels, num_queries], the mask of each query's
        matched tube (zeros for unmatched queries): the target of the mask losses.
      query_classes: int32 [batch, num_queries], the class of the matched tube, or
        num_classes (the void class) for unmatched queries.
      pixel_valid: float32 [batch, num_pixels], 1 on non-void pixels of matched tubes.
      matched_mask_dice: float32 [batch, num_queries], dice of each matched pair, 0 for
        unmatched queries.
      matched_class_prob: float32 [batch, num_queries], predicted probability of the
        matched tube's class, 0 for unmatched queries.
      void_ratio: float32 [batch, num_queries], the share of each query's soft mask that
        falls on pixels outside every matched tube (intersection over prediction).
    """

    query_to_tube: tf.Tensor
    matched: tf.Tensor
    query_masks: tf.Tensor
    query_classes: tf.Tensor
    pixel_valid: tf.Tensor
    matched_mask_dice: tf.Tensor
    matched_class_prob: tf.Tensor
    void_ratio: tf.Tensor


def prepare_targets(
    tube_masks: tf.Tensor, tube_classes: tf.Tensor, tube_valid: tf.Tensor, void_mask: tf.Tensor
) -> ClipTargets:
    """Flattens clip ground truth and removes void pixels and empty or padding tubes.

    Args:
      tube_masks: float32 [batch, num_frames, height, width, num_tubes], binary.
      tube_classes: int32 [batch, num_tubes].
      tube_valid: float32 [batch, num_tubes], 1 for real tubes.
      void_mask: float32 [batch, num_frames, height, width], 1 on void pixels.

    Returns:
      The flattened ClipTargets.
    """
    non_void = 1.0 - loss_utils.flatten_clip(void_mask)
    gt_masks = loss_utils.flatten_clip(tube_masks) * non_void[:, :, tf.newaxis]
    has_pixels = tf.cast(tf.reduce_sum(gt_masks, axis=1) > 0.0, tf.float32)
    tube_valid = tube_valid * has_pixels
    gt_masks = gt_masks * tube_valid[:, tf.newaxis, :]
    pixel_valid = tf.minimum(tf.reduce_sum(gt_masks, axis=2), 1.0)
    return ClipTargets(gt_masks, tube_classes, tube_valid, pixel_valid)


def mask_dice_similarity(
    gt_masks: tf.Tensor, mask_probs: tf.Tensor, pixel_valid: tf.Tensor, epsilon: float
) -> tf.Tensor:
    """Dice between every ground-truth tube and every soft query mask, over the clip.

    Args:
      gt_masks: float32 [batch, num_pixels, num_tubes], binary.
      mask_probs: float32 [batch, num_pixels, num_queries], softmax over queries.
      pixel_valid: float32 [batch, num_pixels]; other pixels are left out of the dice.
      epsilon: added to the denominator.

    Returns:
      float32 [batch, num_tubes, num_queries]: 2|g n| / (|g| + |n| + epsilon).
    """
    mask_probs = mask_probs * pixel_valid[:, :, tf.newaxis]
    intersection = tf.einsum("bpg,bpn->bgn", gt_masks, mask_probs)
    gt_area = tf.reduce_sum(gt_masks, axis=1)[:, :, tf.newaxis]
    pred_area = tf.reduce_sum(mask_probs, axis=1)[:, tf.newaxis, :]
    return 2.0 * intersection / (gt_area + pred_area + epsilon)


def match_tubes(
    mask_logits: tf.Tensor,
    class_logits: tf.Tensor,
    targets: ClipTargets,
    dice_epsilon: float,
) -> TubeMatch:
    """Matches queries to ground-truth tubes by maximising class probability x mask dice.

    Args:
      mask_logits: float32 [batch, num_pixels, num_queries], flattened over the clip.
      class_logits: float32 [batch, num_queries, num_classes + 1]; the last class is void.
      targets: the flattened ground truth from `prepare_targets`.
      dice_epsilon: added to dice and overlap denominators.

    Returns:
      The TubeMatch (all of it gradient-free).
    """
    mask_logits = tf.stop_gradient(mask_logits)
    class_logits = tf.stop_gradient(class_logits)
    num_classes = class_logits.shape[-1] - 1
    mask_probs = tf.nn.softmax(mask_logits, axis=-1)
    dice = mask_dice_similarity(targets.gt_masks, mask_probs, targets.pixel_valid, dice_epsilon)
    class_probs = tf.nn.softmax(class_logits, axis=-1)[:, :, :num_classes]
    class_similarity = tf.gather(class_probs, targets.tube_classes, axis=2, batch_dims=1)
    class_similarity = tf.transpose(class_similarity, [0, 2, 1])
    is_real = targets.tube_valid[:, :, tf.newaxis] > 0.5
    cost = tf.where(is_real, -dice * class_similarity, _PADDING_TUBE_COST)
    _, query_to_tube = matching.linear_sum_assignment(cost)

    tube_index = tf.maximum(query_to_tube, 0)
    matched = tf.cast(query_to_tube >= 0, tf.float32) * tf.gather(
        targets.tube_valid, tube_index, batch_dims=1
    )
    query_to_tube = tf.where(matched > 0.5, query_to_tube, matching.UNASSIGNED)
    query_masks = tf.gather(targets.gt_masks, tube_index, axis=2, batch_dims=1)
    query_masks *= matched[:, tf.newaxis, :]
    query_classes = tf.where(
        matched > 0.5, tf.gather(targets.tube_classes, tube_index, batch_dims=1), num_classes
    )
    pixel_valid = tf.minimum(tf.reduce_sum(query_masks, axis=2), 1.0)

    def matched_value(similarity):
        return tf.gather(tf.transpose(similarity, [0, 2, 1]), tube_index, axis=2, batch_dims=2)

    void_area = tf.einsum("bp,bpn->bn", 1.0 - pixel_valid, mask_probs)
    void_ratio = void_area / (tf.reduce_sum(mask_probs, axis=1) + dice_epsilon)
    return TubeMatch(
        query_to_tube=query_to_tube,
        matched=matched,
        query_masks=query_masks,
        query_classes=query_classes,
        pixel_valid=pixel_valid,
        matched_mask_dice=matched_value(dice) * matched,
        matched_class_prob=matched_value(class_similarity) * matched,
        void_ratio=void_ratio,
    )
