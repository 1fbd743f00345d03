"""Clip augmentation: one random draw shared by every frame of a clip.

DeepLab2 concatenates the current and previous frame along channels before cropping and
flipping so that both get the same transform. We do the same for all T frames: images
[T, H, W, 3] become [H, W, 3T] and labels [T, H, W] become [H, W, T] before resizing,
cropping and flipping, so no frame can be transformed differently from another.

Colour jitter (optional, first) follows the official Video-kMaX, which applies detectron2's
ColorAugSSDTransform (SSD's colour distortion) once to a clip's frames concatenated: one
draw of brightness, contrast, saturation and hue for the whole clip. Unlike that uint8
implementation, ours works on float32 and does not round to integers between the steps.

Randomness is stateless: every draw is a function of a per-clip seed (int32 [2]), which
makes a clip's augmentation reproducible when the pipeline runs deterministically.
Images are padded with DeepLab2's mean pixel (127.5), labels with a caller-given void value.
"""

import math
from collections.abc import Callable

import tensorflow as tf

from deeplab_video.protos import dataset_pb2

# DeepLab2 pads images with the mean pixel so that padding is neutral after normalization.
MEAN_PIXEL = 127.5
# Largest pixel value of the images (uint8 range).
MAX_PIXEL = 255.0
# Values folded into a clip's seed (stateless_fold_in) for draws made apart from its
# geometric transform: one value per use, so that the draws stay independent.
COLOR_JITTER_SEED_TAG = 1
COPY_PASTE_SEED_TAG = 2

# Added to scaled sides before flooring them (resize_to_range).
RESIZE_SLACK = 1e-3


def _stack_frames(image: tf.Tensor, panoptic: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[T, H, W, 3] and [T, H, W] -> [H, W, 3T] and [H, W, T]."""
    shape = tf.shape(image)
    image = tf.transpose(image, [1, 2, 0, 3])
    image = tf.reshape(image, [shape[1], shape[2], shape[0] * 3])
    return image, tf.transpose(panoptic, [1, 2, 0])


def _unstack_frames(image: tf.Tensor, panoptic: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Inverse of _stack_frames."""
    shape = tf.shape(image)
    image = tf.reshape(image, [shape[0], shape[1], -1, 3])
    return tf.transpose(image, [2, 0, 1, 3]), tf.transpose(panoptic, [2, 0, 1])


def _resize(image: tf.Tensor, panoptic: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes stacked frames: bilinear for images, nearest for labels (corners aligned)."""
    image = tf.compat.v1.image.resize(
        image, size, method=tf.image.ResizeMethod.BILINEAR, align_corners=True
    )
    panoptic = tf.compat.v1.image.resize(
        panoptic, size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR, align_corners=True
    )
    return image, panoptic


def _pad(
    image: tf.Tensor,
    panoptic: tf.Tensor,
    offset: tf.Tensor,
    target: tf.Tensor,
    label_pad_value: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads stacked frames to `target` [2] with the image placed at `offset` [2]."""
    size = tf.shape(image)[:2]
    after = target - offset - size
    paddings = tf.stack([[offset[0], after[0]], [offset[1], after[1]], [0, 0]])
    image = tf.pad(image, paddings, constant_values=MEAN_PIXEL)
    panoptic = tf.pad(panoptic, paddings, constant_values=label_pad_value)
    return image, panoptic


def resize_to_range(
    image: tf.Tensor, panoptic: tf.Tensor, min_size: int, max_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes a clip so its shorter side is >= min_size and its longer side <= max_size.

    As DeepLab2's resize_to_range: the shorter side is scaled to min_size, unless that makes
    the longer side exceed max_size, in which case the longer side is scaled to max_size.
    With only max_size set, larger clips are shrunk to it and smaller ones are kept; with
    both 0 the clip is returned unchanged. All frames get the same factor.

    Args:
        image: float32 [num_frames, height, width, 3].
        panoptic: int32 [num_frames, height, width].
        min_size: lower bound of the shorter side (0: none).
        max_size: upper bound of the longer side (0: none).

    Returns:
        (image float32 [num_frames, new_height, new_width, 3],
         panoptic int32 [num_frames, new_height, new_width]).
    """
    if not min_size and not max_size:
        return image, panoptic
    size = tf.cast(tf.shape(image)[1:3], tf.float32)
    scale = min_size / tf.reduce_min(size) if min_size else tf.constant(1.0)
    if max_size:
        scale = tf.minimum(scale, max_size / tf.reduce_max(size))
    # The slack keeps float32 rounding from flooring the bounded side one pixel short
    # (720 * (897 / 720) is 896.99994 in float32).
    new_size = tf.cast(tf.floor(size * scale + RESIZE_SLACK), tf.int32)
    stacked_image, stacked_label = _stack_frames(image, panoptic)
    stacked_image, stacked_label = _resize(stacked_image, stacked_label, new_size)
    return _unstack_frames(stacked_image, stacked_label)


def random_scale_factor(options: dataset_pb2.AugmentationOptions, seed: tf.Tensor) -> tf.Tensor:
    """Draws a float32 scale factor from the options' range (uniform or on the step grid)."""
    low, high = options.min_scale_factor, options.max_scale_factor
    step = options.scale_factor_step_size
    if low == high:
        return tf.constant(low, tf.float32)
    if step <= 0:
        return tf.random.stateless_uniform([], seed, minval=low, maxval=high)
    num_steps = math.floor((high - low) / step + 1e-6) + 1
    index = tf.random.stateless_uniform([], seed, maxval=num_steps, dtype=tf.int32)
    return tf.minimum(low + tf.cast(index, tf.float32) * step, high)


def jitter_colors(
    image: tf.Tensor, options: dataset_pb2.ColorJitterOptions, seed: tf.Tensor
) -> tf.Tensor:
    """SSD colour distortion with one random draw for all frames of a clip.

    Brightness first; then contrast, saturation, hue or saturation, hue, contrast (each
    order with probability 1/2). Each step is applied with options.probability; steps whose
    strength is the identity are left out of the graph.

    Args:
        image: float32 [num_frames, height, width, 3], RGB values 0..255.
        options: step probability and strengths.
        seed: int32 or int64 [2], the clip's stateless random seed.

    Returns:
        float32 [num_frames, height, width, 3], values clipped to 0..255.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=9)

    def uniform(index: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform([], seeds[index], minval=low, maxval=high)

    def step(index: int, apply_fn: Callable[[tf.Tensor], tf.Tensor]) -> Callable:
        def maybe_apply(x: tf.Tensor) -> tf.Tensor:
            applied = uniform(index, 0.0, 1.0) < options.probability
            return tf.cond(applied, lambda: apply_fn(x), lambda: x)

        return maybe_apply

    def in_unit_range(adjust: Callable[[tf.Tensor], tf.Tensor]) -> Callable:
        return lambda x: adjust(x / MAX_PIXEL) * MAX_PIXEL

    def identity(x: tf.Tensor) -> tf.Tensor:
        return x

    brightness = contrast = saturation = hue = identity
    if options.brightness_delta > 0:
        delta = uniform(1, -options.brightness_delta, options.brightness_delta)
        brightness = step(0, lambda x: tf.clip_by_value(x + delta, 0.0, MAX_PIXEL))
    if (options.min_contrast_factor, options.max_contrast_factor) != (1.0, 1.0):
        gain = uniform(3, options.min_contrast_factor, options.max_contrast_factor)
        contrast = step(2, lambda x: tf.clip_by_value(x * gain, 0.0, MAX_PIXEL))
    if (options.min_saturation_factor, options.max_saturation_factor) != (1.0, 1.0):
        chroma = uniform(5, options.min_saturation_factor, options.max_saturation_factor)
        saturation = step(4, in_unit_range(lambda x: tf.image.adjust_saturation(x, chroma)))
    if options.hue_delta > 0:
        shift = uniform(7, -options.hue_delta, options.hue_delta)
        hue = step(6, in_unit_range(lambda x: tf.image.adjust_hue(x, shift)))

    image = brightness(image)
    if contrast is identity:
        return hue(saturation(image))
    contrast_first = uniform(8, 0.0, 1.0) < 0.5
    return tf.cond(
        contrast_first,
        lambda: hue(saturation(contrast(image))),
        lambda: contrast(hue(saturation(image))),
    )


def augment_clip(
    image: tf.Tensor,
    panoptic: tf.Tensor,
    *,
    crop_size: tuple[int, int],
    options: dataset_pb2.AugmentationOptions,
    label_pad_value: int,
    seed: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Colour jitter (if set), random scale, random crop (padding first if needed), flip.

    All frames of the clip get the same colour jitter, scale, crop window and flip.

    Args:
        image: float32 [num_frames, height, width, 3].
        panoptic: int32 [num_frames, height, width].
        crop_size: (crop_height, crop_width) of the output.
        options: colour jitter, scale range, scale step and flip probability.
        label_pad_value: panoptic value of padded pixels (ignore_label * label_divisor).
        seed: int32 [2], the clip's stateless random seed.

    Returns:
        (image float32 [num_frames, crop_height, crop_width, 3],
         panoptic int32 [num_frames, crop_height, crop_width]).
    """
    if options.HasField("color_jitter"):
        jitter_seed = tf.random.experimental.stateless_fold_in(seed, COLOR_JITTER_SEED_TAG)
        image = jitter_colors(image, options.color_jitter, jitter_seed)
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    num_frames = image.shape[0]
    stacked_image, stacked_label = _stack_frames(image, panoptic)

    scaled_size = tf.shape(stacked_image)[:2]
    if options.min_scale_factor != 1.0 or options.max_scale_factor != 1.0:
        scale = random_scale_factor(options, seeds[0])
        scaled_size = tf.cast(tf.cast(scaled_size, tf.float32) * scale, tf.int32)
        stacked_image, stacked_label = _resize(stacked_image, stacked_label, scaled_size)

    # Pad to at least the crop size (at a random offset, as DeepLab2), then crop.
    crop = tf.constant(crop_size, tf.int32)
    margin = crop - scaled_size
    pad_offset = tf.random.stateless_uniform(
        [2], seeds[1], minval=0, maxval=tf.int32.max, dtype=tf.int32
    ) % tf.maximum(margin, 1)
    pad_offset = tf.where(margin > 0, pad_offset, 0)
    padded_size = tf.maximum(scaled_size, crop)
    stacked_image, stacked_label = _pad(
        stacked_image, stacked_label, pad_offset, padded_size, label_pad_value
    )
    crop_offset = tf.random.stateless_uniform(
        [2], seeds[2], minval=0, maxval=tf.int32.max, dtype=tf.int32
    ) % (padded_size - crop + 1)
    stacked_image = tf.slice(stacked_image, tf.concat([crop_offset, [0]], 0), [*crop_size, -1])
    stacked_label = tf.slice(stacked_label, tf.concat([crop_offset, [0]], 0), [*crop_size, -1])

    flip = tf.random.stateless_uniform([], seeds[3]) < options.flip_probability
    stacked_image = tf.where(flip, tf.reverse(stacked_image, [1]), stacked_image)
    stacked_label = tf.where(flip, tf.reverse(stacked_label, [1]), stacked_label)

    image, panoptic = _unstack_frames(stacked_image, stacked_label)
    image = tf.ensure_shape(image, [num_frames, *crop_size, 3])
    panoptic = tf.ensure_shape(panoptic, [num_frames, *crop_size])
    return image, panoptic


def pad_clip(
    image: tf.Tensor, panoptic: tf.Tensor, *, crop_size: tuple[int, int], label_pad_value: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads a clip bottom/right to crop_size (evaluation: no other change).

    Args:
        image: float32 [num_frames, height, width, 3], height <= crop_height and
            width <= crop_width.
        panoptic: int32 [num_frames, height, width].
        crop_size: (crop_height, crop_width).
        label_pad_value: panoptic value of padded pixels (ignore_label * label_divisor).

    Returns:
        (image float32 [num_frames, crop_height, crop_width, 3],
         panoptic int32 [num_frames, crop_height, crop_width]).

    Raises:
        tf.errors.InvalidArgumentError: (when run) a frame is larger than crop_size.
    """
    num_frames = image.shape[0]
    size = tf.shape(image)[1:3]
    fits = tf.debugging.assert_less_equal(
        size,
        tf.constant(crop_size, tf.int32),
        message="evaluation frames must fit in crop_size: raise crop_size (each side 32k + 1) "
        "or set max_resize_value",
    )
    with tf.control_dependencies([fits]):
        stacked_image, stacked_label = _stack_frames(image, panoptic)
    stacked_image, stacked_label = _pad(
        stacked_image,
        stacked_label,
        tf.zeros([2], tf.int32),
        tf.constant(crop_size),
        label_pad_value,
    )
    image, panoptic = _unstack_frames(stacked_image, stacked_label)
    image = tf.ensure_shape(image, [num_frames, *crop_size, 3])
    panoptic = tf.ensure_shape(panoptic, [num_frames, *crop_size])
    return image, panoptic
