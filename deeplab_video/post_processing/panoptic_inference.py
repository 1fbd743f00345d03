"""Panoptic inference for one clip: query masks and classes -> panoptic tubes and objects.

A query's mask spans all T frames of a clip, so every query yields one tube and the
merging below treats the clip as one [T * height * width] canvas. Two modes
(PostProcessingOptions.mode):

- "maskwise": kMaX's mask-wise merging (Yu et al., k-means Mask Transformer, ECCV 2022;
  DeepLab2 `max_deeplab.py`; Video-kMaX `panoptic_inference_mask`). Each query's binary
  mask is its softmax probability > mask_threshold. Queries are ranked by
  class_confidence^reorder_class_weight * mask_confidence^reorder_mask_weight (mask
  confidence: mean probability inside the binary mask) and pasted onto an empty canvas in
  rank order; a query is kept only if its class is confident (class_threshold_thing for
  thing classes, class_threshold_stuff for stuff: both are used, unlike the official code,
  which tests the stuff threshold in both branches), more than overlap_threshold of its
  binary area is still unclaimed, and that unclaimed area reaches the thing/stuff area
  limit (as the official code, the limit is applied inside the merge, so a dropped mask
  leaves its pixels to lower-ranked masks).
- "pixelwise": MaX-DeepLab's argmax over the class-confident queries; pixels whose best
  probability is at most pixel_confidence_threshold, or whose overall best query is not
  confident, are void. Queries whose region is smaller than their area limit become void.

Instead of DeepLab2's loop over mask slots, the mask-wise merge is solved as a fixed point
(see `mask_merging.maskwise_owner`), so no per-slot work is unrolled into the graph.

Outputs: a panoptic clip (semantic * label_divisor + instance; things get clip-local
instance ids 1..K in rank order, stuff has instance 0, void is ignore_label *
label_divisor) and, for every kept thing object, padded rows with its query index,
clip-local id, class, class confidence, box (union over the frames) and query embedding.
Stuff never becomes an object row, so it never enters tracking.

Logits are resized with align_corners=True, DeepLab2's convention for inputs of size
stride * k + 1 (our crop sizes); merge_at_input_resolution=False merges at stride 4 and
resizes the segment map by nearest neighbour instead.
"""

from typing import NamedTuple

import tensorflow as tf

from deeplab_video.data import datasets
from deeplab_video.post_processing import mask_merging, object_features
from deeplab_video.protos import evaluator_pb2

_MODES = ("maskwise", "pixelwise")


class ClipPanoptic(NamedTuple):
    """Panoptic result of one clip. Object rows are padded to max_objects_per_clip (K).

    Attributes:
      panoptic: int32 [num_frames, height, width], semantic * label_divisor + instance.
      num_objects: int32 [], number of valid object rows (thing objects of the clip).
      query_indices: int32 [K], the query of each object (-1 on padding rows).
      local_ids: int32 [K], the instance id of row k in `panoptic`: k + 1 (0 on padding).
      classes: int32 [K], semantic class (-1 on padding rows).
      scores: float32 [K], class confidence (0 on padding rows).
      boxes: float32 [K, 4], normalised [x0, y0, x1, y1], union over the clip's frames.
      embeddings: float32 [K, embedding_dim], the query embeddings (0 on padding rows).
    """

    panoptic: tf.Tensor
    num_objects: tf.Tensor
    query_indices: tf.Tensor
    local_ids: tf.Tensor
    classes: tf.Tensor
    scores: tf.Tensor
    boxes: tf.Tensor
    embeddings: tf.Tensor


def _validate(options: evaluator_pb2.PostProcessingOptions) -> None:
    """Raises ValueError naming the first out-of-range post-processing option."""
    if options.mode not in _MODES:
        raise ValueError(f"post_processing.mode must be one of {_MODES}; got '{options.mode}'.")
    for name in ("class_threshold_thing", "class_threshold_stuff", "overlap_threshold"):
        if not 0.0 <= getattr(options, name) <= 1.0:
            raise ValueError(f"post_processing.{name} must lie in [0, 1].")
    for name in ("mask_threshold", "pixel_confidence_threshold"):
        if not 0.0 <= getattr(options, name) < 1.0:
            raise ValueError(f"post_processing.{name} must lie in [0, 1).")
    if options.max_objects_per_clip < 1:
        raise ValueError("post_processing.max_objects_per_clip must be positive.")


def _is_static_size(tensor: tf.Tensor, size: tuple) -> bool:
    """Whether `tensor`'s axes 1 and 2 are statically known to equal the Python ints `size`."""
    return all(isinstance(side, int) for side in size) and tuple(tensor.shape[1:3]) == size


def _resize_logits(logits: tf.Tensor, size: tuple) -> tf.Tensor:
    """Bilinear resize of [num_frames, h, w, channels], align_corners=True (DeepLab2).

    `size` holds two ints or two int32 scalar tensors.
    """
    if _is_static_size(logits, size):
        return logits
    return tf.compat.v1.image.resize_bilinear(logits, size, align_corners=True)


def _resize_nearest(labels: tf.Tensor, size: tuple) -> tf.Tensor:
    """Nearest-neighbour resize of int32 [num_frames, h, w] with aligned corners.

    Output pixel y reads input row round(y * (h - 1) / (height - 1)), the sampling
    grid of `_resize_logits`, so stride-4 segments land where the logits put them.
    `size` holds two ints or two int32 scalar tensors.
    """

    def source(out_size, in_size):
        scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
        return tf.cast(tf.floor(tf.range(out_size, dtype=tf.float32) * scale + 0.5), tf.int32)

    if _is_static_size(labels, size):
        return labels
    labels = tf.gather(labels, source(size[0], tf.shape(labels)[1]), axis=1)
    return tf.gather(labels, source(size[1], tf.shape(labels)[2]), axis=2)


def panoptic_inference(
    mask_logits: tf.Tensor,
    class_logits: tf.Tensor,
    query_embeddings: tf.Tensor,
    output_size: tuple[int | tf.Tensor, int | tf.Tensor],
    descriptor: datasets.DatasetDescriptor,
    options: evaluator_pb2.PostProcessingOptions,
) -> ClipPanoptic:
    """Turns one clip's query predictions into a panoptic clip and its thing objects.

    Args:
      mask_logits: float32 [num_frames, h, w, num_queries] (stride 4); num_queries static.
      class_logits: float32 [num_queries, num_classes + 1], void last.
      query_embeddings: float32 [num_queries, embedding_dim].
      output_size: (height, width) of the returned panoptic clip: ints, or int32 scalar
        tensors when the frame size is only known at run time (the exported model).
      descriptor: dataset constants (thing_ids, label_divisor, ignore_label).
      options: thresholds, area limits, mode and object capacity.

    Returns:
      A ClipPanoptic; panoptic is int32 [num_frames, height, width].

    Raises:
      ValueError: on an unknown mode, an out-of-range threshold, or a non-static number of
        queries.
    """
    _validate(options)
    mask_logits = tf.convert_to_tensor(mask_logits, tf.float32)
    class_logits = tf.convert_to_tensor(class_logits, tf.float32)
    query_embeddings = tf.convert_to_tensor(query_embeddings, tf.float32)
    num_queries = mask_logits.shape[-1]
    if num_queries is None:
        raise ValueError("mask_logits needs a static number of queries (last axis).")
    output_size = tuple(side if tf.is_tensor(side) else int(side) for side in output_size)
    max_objects = options.max_objects_per_clip
    divisor = descriptor.label_divisor

    class_probs = tf.nn.softmax(class_logits, axis=-1)[:, :-1]
    scores = tf.reduce_max(class_probs, axis=-1)
    classes = tf.argmax(class_probs, axis=-1, output_type=tf.int32)
    thing_ids = tf.constant(list(descriptor.thing_ids) or [-1], tf.int32)
    is_thing = tf.reduce_any(tf.equal(classes[:, tf.newaxis], thing_ids[tf.newaxis, :]), axis=1)
    confident = scores >= tf.where(
        is_thing, options.class_threshold_thing, options.class_threshold_stuff
    )
    area_limit = tf.cast(
        tf.where(is_thing, options.thing_area_limit, options.stuff_area_limit), tf.float32
    )

    if options.mode == "maskwise":
        # Only class-confident queries can be pasted: their logits are resized on their own
        # (resizing is per channel, so these equal the channels of the full resize).
        ids = mask_merging.confident_ids(confident)
        confident_logits = tf.gather(mask_logits, ids, axis=-1)
    if options.merge_at_input_resolution:
        mask_logits = _resize_logits(mask_logits, output_size)
    merge_shape = tf.shape(mask_logits)[:3]
    flat_logits = tf.reshape(mask_logits, [-1, num_queries])
    if options.mode == "maskwise":
        if options.merge_at_input_resolution:
            confident_logits = tf.cond(  # The resize rejects an image without channels.
                tf.size(ids) > 0,
                lambda: _resize_logits(confident_logits, output_size),
                lambda: tf.zeros(tf.concat([merge_shape, [0]], axis=0)),
            )
        masks = mask_merging.confident_masks(
            flat_logits,
            tf.reshape(confident_logits, [tf.shape(flat_logits)[0], -1]),
            ids,
            options.mask_threshold,
        )
        sets = mask_merging.mask_sets(masks.on, num_queries)
        area, mask_confidence = mask_merging.mask_area_and_confidence(masks, sets, num_queries)
        ranking = (scores**options.reorder_class_weight) * (
            mask_confidence**options.reorder_mask_weight
        )
    else:
        ranking = scores
    order = tf.argsort(ranking, direction="DESCENDING", stable=True)
    rank = tf.math.invert_permutation(order)
    if options.mode == "maskwise":
        owner = mask_merging.maskwise_owner(
            ids, sets, area, area_limit, rank, options.overlap_threshold
        )
    else:
        owner = mask_merging.pixelwise_owner(
            flat_logits, confident, area_limit, rank, options.pixel_confidence_threshold
        )
    owner = tf.reshape(owner, merge_shape)
    if not options.merge_at_input_resolution:
        owner = _resize_nearest(owner, output_size)

    # Thing objects in rank order get clip-local ids 1..max_objects; rank num_queries is void.
    owner_area = tf.math.bincount(
        tf.reshape(owner, [-1]), minlength=num_queries + 1, maxlength=num_queries + 1
    )[:num_queries]
    ranked_is_object = tf.gather(is_thing, order) & (owner_area > 0)
    ranked_local = tf.cumsum(tf.cast(ranked_is_object, tf.int32)) * tf.cast(
        ranked_is_object, tf.int32
    )
    ranked_local = tf.where(ranked_local <= max_objects, ranked_local, 0)
    ranked_classes = tf.gather(classes, order)
    void = descriptor.ignore_label * divisor
    ranked_value = tf.where(
        tf.gather(is_thing, order) & (ranked_local == 0),
        void,
        ranked_classes * divisor + ranked_local,
    )
    panoptic = tf.gather(tf.concat([ranked_value, [void]], axis=0), owner)
    instance_map = tf.gather(tf.concat([ranked_local, [0]], axis=0), owner)

    num_objects = tf.reduce_sum(tf.cast(ranked_local > 0, tf.int32))
    object_queries = tf.boolean_mask(order, ranked_local > 0)
    pad = [[0, max_objects - num_objects]]
    row_valid = tf.range(max_objects) < num_objects
    query_indices = tf.pad(object_queries, pad, constant_values=-1)
    safe_queries = tf.maximum(query_indices, 0)
    boxes, _ = object_features.object_boxes(instance_map, max_objects)
    return ClipPanoptic(
        panoptic=panoptic,
        num_objects=num_objects,
        query_indices=query_indices,
        local_ids=tf.where(row_valid, tf.range(1, max_objects + 1), 0),
        classes=tf.where(row_valid, tf.gather(classes, safe_queries), -1),
        scores=tf.where(row_valid, tf.gather(scores, safe_queries), 0.0),
        boxes=boxes,
        embeddings=tf.where(
            row_valid[:, tf.newaxis], tf.gather(query_embeddings, safe_queries), 0.0
        ),
    )
