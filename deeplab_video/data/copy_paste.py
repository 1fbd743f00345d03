"""Clip-consistent panoptic copy-paste: segments of a donor clip pasted onto every frame.

The official Video-kMaX trains on VIPSeg with copy-paste from another video (its VIPSeg
dataset mapper): a random subset of the donor's segments, chosen in the donor's first
frame, is pasted onto the same frame index of the clip, for every frame, so a pasted object
is one tube over the clip. We follow it on already augmented clips of equal size:

  * Candidates are the labels in the donor's first frame that are neither void (ignore
    label, unknown class, padding) nor crowd (a thing class with instance 0). The official
    mapper takes the candidates from the annotation of the whole first frame; ours are those
    still inside the donor's crop.
  * k is drawn uniformly from {0, ..., number of candidates}; the first k of a random
    permutation of the candidates are pasted, in every frame wherever the donor has them.
  * Pasted pixels take the donor's image and label; the clip's own labels there are lost
    (an object covered everywhere drops out of the targets).
  * Pasted things get fresh instance ids above every instance id of the clip (the same id
    in all frames); pasted stuff keeps its label, so it joins the clip's stuff of the same
    class in one tube, as in the official mapper.

All draws are stateless functions of a seed; the functions run inside a tf.data map.
"""

import tensorflow as tf

# Sentinel appended to the sorted table of pasted labels, so the table is never empty.
_NO_LABEL = tf.int32.max


def paste_clip(
    image: tf.Tensor,
    panoptic: tf.Tensor,
    donor_image: tf.Tensor,
    donor_panoptic: tf.Tensor,
    *,
    num_classes: int,
    thing_ids: tuple[int, ...],
    label_divisor: int,
    seed: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pastes a random subset of the donor clip's segments onto every frame of the clip.

    Args:
        image: float32 [num_frames, height, width, 3], the clip.
        panoptic: int32 [num_frames, height, width], semantic * label_divisor + instance.
        donor_image: float32 [num_frames, height, width, 3], the donor clip.
        donor_panoptic: int32 [num_frames, height, width], the donor's labels.
        num_classes: number of real classes; other semantic ids are void.
        thing_ids: the thing classes (instance 0 on them is a crowd region).
        label_divisor: panoptic = semantic * label_divisor + instance.
        seed: int32 or int64 [2], stateless random seed.

    Returns:
        (image float32 [num_frames, height, width, 3],
         panoptic int32 [num_frames, height, width]) after pasting.

    Raises:
        tf.errors.InvalidArgumentError: (when run) the fresh instance ids would reach
            label_divisor.
    """
    shuffle_seed, count_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    candidates = _pastable_labels(donor_panoptic[0], num_classes, thing_ids, label_divisor)
    num_candidates = tf.size(candidates)
    keys = tf.random.stateless_uniform([num_candidates], shuffle_seed)
    num_pasted = tf.random.stateless_uniform(
        [], count_seed, minval=0, maxval=num_candidates + 1, dtype=tf.int32
    )
    pasted = tf.sort(tf.gather(candidates, tf.argsort(keys)[:num_pasted]))
    is_thing = _thing_mask(tf.math.floordiv(pasted, label_divisor), num_classes, thing_ids)
    new_labels = _fresh_labels(pasted, is_thing, panoptic, label_divisor)

    table = tf.concat([pasted, [_NO_LABEL]], 0)
    new_labels = tf.concat([new_labels, [_NO_LABEL]], 0)
    flat = tf.reshape(donor_panoptic, [-1])
    index = tf.minimum(tf.searchsorted(table, flat), tf.size(table) - 1)
    hit = tf.reshape(tf.equal(tf.gather(table, index), flat), tf.shape(donor_panoptic))
    donor_labels = tf.reshape(tf.gather(new_labels, index), tf.shape(donor_panoptic))

    panoptic = tf.where(hit, donor_labels, panoptic)
    image = tf.where(hit[..., tf.newaxis], donor_image, image)
    return image, panoptic


def _thing_mask(semantic: tf.Tensor, num_classes: int, thing_ids: tuple[int, ...]) -> tf.Tensor:
    """bool, like semantic: the pixel's class is a known thing class."""
    table = tf.constant([i in thing_ids for i in range(num_classes)], tf.bool)
    known = (semantic >= 0) & (semantic < num_classes)
    return known & tf.gather(table, tf.clip_by_value(semantic, 0, num_classes - 1))


def _pastable_labels(
    panoptic: tf.Tensor, num_classes: int, thing_ids: tuple[int, ...], label_divisor: int
) -> tf.Tensor:
    """int32 [num_labels]: the sorted labels of a frame that are neither void nor crowd."""
    labels, _ = tf.unique(tf.reshape(panoptic, [-1]))
    semantic = tf.math.floordiv(labels, label_divisor)
    instance = tf.math.floormod(labels, label_divisor)
    known = (semantic >= 0) & (semantic < num_classes)
    crowd = _thing_mask(semantic, num_classes, thing_ids) & tf.equal(instance, 0)
    return tf.sort(tf.boolean_mask(labels, known & ~crowd))


def _fresh_labels(
    pasted: tf.Tensor, is_thing: tf.Tensor, panoptic: tf.Tensor, label_divisor: int
) -> tf.Tensor:
    """The labels the pasted segments get in the clip.

    Args:
        pasted: int32 [num_pasted], the donor labels to paste.
        is_thing: bool [num_pasted], whether each is a thing.
        panoptic: int32 [num_frames, height, width], the clip's labels.
        label_divisor: panoptic = semantic * label_divisor + instance.

    Returns:
        int32 [num_pasted]: things numbered after the clip's largest instance id (in the
        order of `pasted`), stuff unchanged.
    """
    first_free = tf.reduce_max(tf.math.floormod(panoptic, label_divisor)) + 1
    instance = first_free + tf.cumsum(tf.cast(is_thing, tf.int32), exclusive=True)
    largest = tf.reduce_max(tf.concat([[0], tf.boolean_mask(instance, is_thing)], 0))
    fits = tf.debugging.assert_less(
        largest,
        label_divisor,
        message="copy-paste ran out of instance ids below label_divisor; lower the number of "
        "objects per clip or use a dataset with a larger label_divisor",
    )
    with tf.control_dependencies([fits]):
        semantic = tf.math.floordiv(pasted, label_divisor)
        return tf.where(is_thing, semantic * label_divisor + instance, pasted)
