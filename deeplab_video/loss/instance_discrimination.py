"""Pixel-wise instance discrimination loss of CMT-DeepLab / kMaX-DeepLab, on tubes.

K pixels are drawn from the non-void pixels of the whole clip (all T frames), favouring
small tubes. Their L2-normalised features are compared pairwise; the soft target of a pixel
is the uniform distribution over the sampled pixels of its own tube, so a pixel is pulled
towards the same object in every frame and pushed from all other objects.

Reference:
  CMT-DeepLab: "Clustering Mask Transformers for Panoptic Segmentation", CVPR 2022.
"""

import tensorflow as tf

from deeplab_video.loss import loss_utils


def instance_discrimination_loss(
    pixel_features: tf.Tensor,
    gt_masks: tf.Tensor,
    pixel_valid: tf.Tensor,
    sample_k: int,
    sample_temperature: float,
    temperature: float,
) -> tf.Tensor:
    """Contrastive soft cross-entropy between sampled pixel features.

    Args:
      pixel_features: float32 [batch, num_pixels, channels], L2-normalised, flattened over
        the clip.
      gt_masks: float32 [batch, num_pixels, num_tubes], binary tube masks (void removed).
      pixel_valid: float32 [batch, num_pixels], 1 on pixels of a tube.
      sample_k: pixels drawn per clip; 0, or at least num_pixels, uses every pixel.
      sample_temperature: temperature of the inverse-area sampling (0: uniform).
      temperature: the feature similarities are divided by it before the softmax.

    Returns:
      float32 [batch]: the loss averaged over valid sampled pixels.
    """
    num_draws = loss_utils.sample_size(sample_k, pixel_features.shape[1])
    if num_draws is not None:
        logits = loss_utils.inverse_area_sampling_logits(gt_masks, pixel_valid, sample_temperature)
        indices = loss_utils.gumbel_top_k(logits, num_draws)
        pixel_features = tf.gather(pixel_features, indices, batch_dims=1)
        gt_masks = tf.gather(gt_masks, indices, batch_dims=1)
        pixel_valid = tf.gather(pixel_valid, indices, batch_dims=1)

    same_tube = tf.einsum("bkg,bjg->bkj", gt_masks, gt_masks)
    target = same_tube / tf.maximum(tf.reduce_sum(same_tube, axis=2, keepdims=True), 1.0)
    similarity = tf.einsum("bkd,bjd->bkj", pixel_features, pixel_features) / temperature
    # Void samples are neither anchors (their target row is zero) nor negatives.
    similarity += (1.0 - pixel_valid[:, tf.newaxis, :]) * loss_utils.MASKING_LOGIT
    cross_entropy = -tf.reduce_sum(target * tf.nn.log_softmax(similarity, axis=2), axis=2)
    return loss_utils.mean_over_nonzero(cross_entropy)
