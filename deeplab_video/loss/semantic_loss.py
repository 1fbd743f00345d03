"""Auxiliary semantic loss of kMaX-DeepLab: sampled, top-k softmax cross-entropy per clip.

Pixels are drawn from the whole clip with the same small-tube-favouring sampling as the
instance discrimination loss; the per-pixel cross-entropy is weighted (ignore label: 0,
pixels of small instances: small_instance_weight), the hardest top-k percent are kept and
averaged.

Reference:
  kMaX-DeepLab: "k-means Mask Transformer", ECCV 2022 (DeepLab2 max_deeplab_loss.py).
"""

import tensorflow as tf

from deeplab_video.loss import loss_utils


def small_instance_pixel_weights(
    gt_masks: tf.Tensor, num_frames: int, min_area: int, small_weight: float
) -> tf.Tensor:
    """Per-pixel weights that raise the pixels of small instances (DeepLab2's option).

    A tube is small in a frame when it covers fewer than `min_area` pixels of that frame.

    Args:
      gt_masks: float32 [batch, num_frames * height * width, num_tubes], binary.
      num_frames: T, to split the pixel axis into frames.
      min_area: area (pixels at the tube stride) below which an instance is small; 0 never.
      small_weight: weight of the pixels of small instances; others get 1.

    Returns:
      float32 [batch, num_frames * height * width].
    """
    batch = tf.shape(gt_masks)[0]
    per_frame = tf.reshape(gt_masks, [batch, num_frames, -1, gt_masks.shape[-1]])
    area = tf.reduce_sum(per_frame, axis=2, keepdims=True)
    small = tf.cast(area < float(min_area), tf.float32)
    in_small = tf.reshape(tf.reduce_max(per_frame * small, axis=3), [batch, -1])
    return 1.0 + (small_weight - 1.0) * in_small


def auxiliary_semantic_loss(
    semantic_logits: tf.Tensor,
    semantic_labels: tf.Tensor,
    pixel_weights: tf.Tensor,
    sampling_logits: tf.Tensor,
    sample_k: int,
    top_k_percent: float,
    ignore_label: int,
) -> tf.Tensor:
    """Softmax cross-entropy on sampled pixels, hardest top-k percent, ignore label excluded.

    Args:
      semantic_logits: float32 [batch, num_pixels, num_classes], flattened over the clip.
      semantic_labels: int32 [batch, num_pixels], class or ignore_label.
      pixel_weights: float32 [batch, num_pixels], per-pixel loss weights.
      sampling_logits: float32 [batch, num_pixels], logits of the pixel draw.
      sample_k: pixels drawn per clip; 0, or at least num_pixels, uses every pixel.
      top_k_percent: fraction in (0, 1] of the largest weighted losses that are kept.
      ignore_label: label of pixels without a class.

    Returns:
      float32 [batch]: kept losses averaged over their non-zero entries.
    """
    num_draws = loss_utils.sample_size(sample_k, semantic_logits.shape[1])
    if num_draws is not None:
        indices = loss_utils.gumbel_top_k(sampling_logits, num_draws)
        semantic_logits = tf.gather(semantic_logits, indices, batch_dims=1)
        semantic_labels = tf.gather(semantic_labels, indices, batch_dims=1)
        pixel_weights = tf.gather(pixel_weights, indices, batch_dims=1)

    num_classes = semantic_logits.shape[-1]
    labelled = (semantic_labels != ignore_label) & (semantic_labels >= 0)
    labelled &= semantic_labels < num_classes
    labels = tf.where(labelled, semantic_labels, 0)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=semantic_logits
    )
    losses = cross_entropy * pixel_weights * tf.cast(labelled, tf.float32)
    if top_k_percent < 1.0:
        num_pixels = losses.shape[1]
        if num_pixels is not None:
            keep = max(round(top_k_percent * num_pixels), 1)
        else:
            num_pixels = tf.cast(tf.shape(losses)[1], tf.float32)
            keep = tf.maximum(tf.cast(tf.math.round(top_k_percent * num_pixels), tf.int32), 1)
        losses, _ = tf.math.top_k(losses, k=keep, sorted=False)
    return loss_utils.mean_over_nonzero(losses)
