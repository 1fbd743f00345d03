"""Ground-truth tubes of a clip: one binary mask per object over all frames of the clip.

A tube groups the pixels that carry the same panoptic label in any of the T frames, so an
object keeps one tube (and one matched query) across the clip, as Video-kMaX's clip-level
matching needs. The targets are computed on the label sampled at the model's mask stride
(pixels [::stride, ::stride], so a 97-pixel side gives 25 samples); a tube therefore never
has an empty mask at the resolution the loss sees.

Rules:
  * void pixels are the ignore label, any semantic id outside [0, num_classes) and crowd
    regions (a thing class with instance 0); they form no tube and are marked in the
    void mask, which the losses exclude;
  * a stuff class forms one tube whatever instance ids its pixels carry;
  * tubes are listed in increasing panoptic label; when a clip has more than `max_tubes`,
    the smallest tubes (fewest strided pixels; on ties the larger label) are dropped.
"""

import tensorflow as tf

from deeplab_video import common

# Label value of padding slots; real tube labels and the void marker (-1) are larger.
_PADDING_LABEL = -2
_VOID_LABEL = -1


def strided_size(size: int, stride: int) -> int:
    """Number of samples [::stride] keeps of a side of `size` pixels."""
    return (size - 1) // stride + 1


def compute_tube_targets(
    panoptic: tf.Tensor,
    *,
    num_classes: int,
    thing_ids: tuple[int, ...],
    label_divisor: int,
    max_tubes: int,
    stride: int,
) -> dict[str, tf.Tensor]:
    """Computes the ground-truth tubes of one clip with TF ops (usable in a tf.data map).

    Args:
        panoptic: int32 [num_frames, height, width], semantic * label_divisor + instance.
        num_classes: number of real classes; other semantic ids (ignore label) are void.
        thing_ids: classes whose instance 0 marks a crowd (void) region.
        label_divisor: panoptic = semantic * label_divisor + instance.
        max_tubes: number of tube slots returned.
        stride: sampling stride of the masks.

    Returns:
        A dict with (h = strided_size(height, stride), w likewise)
          common.TUBE_MASKS: float32 [num_frames, h, w, max_tubes], 1 inside a tube,
          common.TUBE_CLASSES: int32 [max_tubes], semantic class (0 for padding slots),
          common.TUBE_VALID: float32 [max_tubes], 1 for real tubes,
          common.VOID_MASK: float32 [num_frames, h, w], 1 on void pixels,
          common.SEMANTIC_STRIDED: int32 [num_frames, h, w], the semantic label.
    """
    strided = panoptic[:, ::stride, ::stride]
    semantic = tf.math.floordiv(strided, label_divisor)
    instance = tf.math.floormod(strided, label_divisor)
    known = (semantic >= 0) & (semantic < num_classes)
    thing_table = tf.constant([i in thing_ids for i in range(num_classes)], tf.bool)
    is_thing = known & tf.gather(thing_table, tf.clip_by_value(semantic, 0, num_classes - 1))
    void = ~known | (is_thing & tf.equal(instance, 0))
    tube_ids = tf.where(void, _VOID_LABEL, tf.where(is_thing, strided, semantic * label_divisor))

    labels, _, counts = tf.unique_with_counts(tf.reshape(tube_ids, [-1]))
    real = labels >= 0
    labels = tf.boolean_mask(labels, real)
    counts = tf.boolean_mask(counts, real)
    order = tf.argsort(labels)
    labels = tf.gather(labels, order)
    counts = tf.gather(counts, order)
    num_kept = tf.minimum(tf.size(labels), max_tubes)
    # top_k is stable: among equal counts the smaller label (lower index) wins.
    _, largest = tf.math.top_k(counts, k=num_kept)
    kept = tf.gather(labels, tf.sort(largest))
    slots = tf.pad(
        kept, [[0, max_tubes - num_kept]], constant_values=_PADDING_LABEL
    )  # int32 [max_tubes]
    slots = tf.ensure_shape(slots, [max_tubes])
    valid = tf.range(max_tubes) < num_kept

    masks = tf.cast(tf.equal(tube_ids[..., tf.newaxis], slots), tf.float32)
    return {
        common.TUBE_MASKS: masks,
        common.TUBE_CLASSES: tf.where(valid, tf.math.floordiv(slots, label_divisor), 0),
        common.TUBE_VALID: tf.cast(valid, tf.float32),
        common.VOID_MASK: tf.cast(void, tf.float32),
        common.SEMANTIC_STRIDED: semantic,
    }
