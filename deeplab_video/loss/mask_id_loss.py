"""Mask-ID cross-entropy of MaX-DeepLab, on tubes.

Every non-void pixel of the clip belongs to one ground-truth tube, and that tube is matched
to one query; the loss is the softmax cross-entropy over queries at that pixel with the
matched query as target. Pixels of void regions or of unmatched tubes are left out.

Reference:
  MaX-DeepLab: "End-to-End Panoptic Segmentation with Mask Transformers", CVPR 2021.
"""

import tensorflow as tf

from deeplab_video.loss import loss_utils, tube_matching


def mask_id_cross_entropy(mask_logits: tf.Tensor, match: tube_matching.TubeMatch) -> tf.Tensor:
    """Per-pixel cross-entropy over queries, target = the query matched to the pixel's tube.

    Args:
      mask_logits: float32 [batch, num_pixels, num_queries], flattened over the clip.
      match: the query-to-tube matching; its query_masks are one-hot over queries on valid
        pixels and zero elsewhere.

    Returns:
      float32 [batch]: cross-entropy averaged over valid pixels with non-zero loss.
    """
    log_probs = tf.nn.log_softmax(mask_logits, axis=-1)
    cross_entropy = -tf.reduce_sum(match.query_masks * log_probs, axis=-1)
    return loss_utils.mean_over_nonzero(cross_entropy * match.pixel_valid)
