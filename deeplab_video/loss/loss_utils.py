"""Small helpers shared by the Video-kMaX loss terms: clip flattening, averaging, sampling.

Losses are computed on tubes: the T frames of a clip are flattened together into one pixel
axis of T * h * w positions, so a dice or a cross-entropy covers the whole clip at once.
"""

import tensorflow as tf

# Added to the logits of positions that must never win a softmax or a top-k draw.
MASKING_LOGIT = -99999.0


def flatten_clip(tensor: tf.Tensor) -> tf.Tensor:
    """Folds the frame and spatial axes of a clip tensor into one pixel axis.

    Args:
      tensor: [batch, num_frames, height, width] or [batch, num_frames, height, width,
        channels] tensor of any dtype.

    Returns:
      [batch, num_frames * height * width] or [batch, num_frames * height * width, channels]
      tensor of the same dtype; pixel index = (frame * height + row) * width + column.

    Raises:
      ValueError: if the rank is not 4 or 5.
    """
    rank = tensor.shape.rank
    if rank not in (4, 5):
        raise ValueError(
            f"Expected a [batch, num_frames, height, width(, channels)] tensor, got shape "
            f"{tensor.shape}."
        )
    shape = tensor.shape
    pixels = None
    if None not in shape[1:4]:
        pixels = shape[1] * shape[2] * shape[3]
    pixels = pixels if pixels is not None else -1
    batch = shape[0] if shape[0] is not None else tf.shape(tensor)[0]
    if rank == 4:
        return tf.reshape(tensor, [batch, pixels])
    return tf.reshape(tensor, [batch, pixels, shape[4] if shape[4] is not None else -1])


def mean_over_nonzero(losses: tf.Tensor) -> tf.Tensor:
    """Averages per-element losses over their non-zero entries, per sample.

    kMaX-DeepLab averages weighted losses this way: entries whose weight is zero (void
    pixels, ignored labels) do not count in the denominator.

    Args:
      losses: float32 [batch, num_elements], already weighted.

    Returns:
      float32 [batch]: sum / max(number of non-zero entries, 1).
    """
    count = tf.reduce_sum(tf.cast(tf.not_equal(losses, 0.0), losses.dtype), axis=1)
    return tf.reduce_sum(losses, axis=1) / tf.maximum(count, 1.0)


def inverse_area_sampling_logits(
    gt_masks: tf.Tensor, pixel_valid: tf.Tensor, temperature: float
) -> tf.Tensor:
    """Sampling logits that favour pixels of small tubes (kMaX-DeepLab's pixel sampling).

    The logit of a valid pixel is temperature * log(num_pixels / area of its tube); invalid
    pixels get MASKING_LOGIT, so they are drawn only when there are fewer valid pixels than
    draws.

    Args:
      gt_masks: float32 [batch, num_pixels, num_tubes], binary tube masks over the clip.
      pixel_valid: float32 [batch, num_pixels], 1 where a pixel may be sampled.
      temperature: sampling temperature; 0 samples valid pixels uniformly, larger values
        favour small tubes more.

    Returns:
      float32 [batch, num_pixels] logits.
    """
    tube_area = tf.reduce_sum(gt_masks, axis=1, keepdims=True)
    pixel_area = tf.reduce_sum(gt_masks * tube_area, axis=2)
    num_pixels = tf.cast(tf.shape(gt_masks)[1], tf.float32)
    logits = tf.math.log(num_pixels / tf.maximum(pixel_area, 1.0)) * temperature
    return tf.where(pixel_valid > 0.5, logits, MASKING_LOGIT)


def gumbel_top_k(logits: tf.Tensor, k: int) -> tf.Tensor:
    """Draws k distinct indices per row from softmax(logits) without replacement.

    Uses the Gumbel-top-k trick: the k largest of logits + Gumbel noise.

    Args:
      logits: float32 [batch, num_items].
      k: number of draws, at most num_items.

    Returns:
      int32 [batch, k] indices.
    """
    uniform = tf.random.uniform(tf.shape(logits), minval=0.0, maxval=1.0, dtype=logits.dtype)
    tiny = tf.constant(1e-20, logits.dtype)
    gumbel = -tf.math.log(-tf.math.log(uniform + tiny) + tiny)
    _, indices = tf.math.top_k(logits + gumbel, k=k, sorted=False)
    return indices


def sample_size(requested: int, num_pixels: int | None) -> int | None:
    """Number of pixels to draw: `requested` capped at the clip size; None means all pixels.

    Args:
      requested: pixels asked for; 0 means no sampling (use every pixel).
      num_pixels: static number of pixels of the clip, or None when unknown.

    Returns:
      The static number of draws, or None when every pixel is used.

    Raises:
      ValueError: if sampling is requested but the clip size is not static.
    """
    if requested <= 0:
        return None
    if num_pixels is None:
        raise ValueError(
            "Pixel sampling needs static num_frames, height and width; got unknown sizes."
        )
    return None if requested >= num_pixels else requested
