"""Panoptic inference for one clip: query masks and classes -> panoptic tubes and objects.

A query's mask spans all T frames of a clip, so every query yields one tube and the
merging below treats the clip as one [T * height * width] canvas. Three modes
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
- "pixelwise": MaX-DeepLab's argmax over the class-confident queries (DeepLab2's
  variant); pixels whose best probability is at most pixel_confidence_threshold, or whose
  overall best query is not confident, are void. Queries whose region is smaller than
  their area limit become void.
- "pixelwise_official": the official Video-kMaX default (`panoptic_inference_pixel`): a
  query takes part when its class score exceeds mask_threshold (OBJECT_MASK_THRESHOLD,
  things and stuff alike); each pixel goes to its highest-logit such query when that
  query's probability (a softmax over them) exceeds class_threshold_thing
  (CLASS_THRESHOLD_THING), else it is void. No area limit, no test against the other
  queries; class_threshold_stuff and pixel_confidence_threshold are unused.

Instead of DeepLab2's loop over mask slots, the mask-wise merge is solved as a fixed point
(see `mask_merging.maskwise_owner`), so no per-slot work is unrolled into the graph.

Outputs: a panoptic clip (semantic * label_divisor + instance; things get clip-local
instance ids 1..K in rank order, stuff has instance 0, void is ignore_label *
label_divisor) and, for every kept thing object, padded rows with its query index,
clip-local id, class, class confidence, box (union over the frames) and query embedding.
Stuff never becomes an object row, so it never enters tracking.

Logits are resized with align_corners=True, DeepLab2's convention for inputs of size
stride * k + 1 (our crop sizes; the official code aligns corners for such sizes too): to
the network's input canvas, cropped to the image (padding never takes part in the merge),
then resized to the output size when the frames were resized for the network (evaluation
at min/max_resize_value); merge_at_input_resolution=False merges at stride 4 and resizes
the segment map by nearest neighbour instead.
"""

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from deeplab_video import config, datasets
from deeplab_video.post_processing import mask_merging, native_merge, object_features, op_set
from deeplab_video.protos import evaluator_pb2


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
    if options.mode not in config.POST_PROCESSING_MODES:
        raise ValueError(
            f"post_processing.mode must be one of {config.POST_PROCESSING_MODES}; "
            f"got '{options.mode}'."
        )
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
    # The op behind tf.compat.v1.image.resize_bilinear, which logs a deprecation warning.
    return tf.raw_ops.ResizeBilinear(images=logits, size=tf.stack(size), align_corners=True)


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


class _Queries(NamedTuple):
    """Class predictions of the N queries.

    Attributes:
      scores: float32 [N], class confidence (softmax over the classes, void left out).
      classes: int32 [N], the most likely class.
      is_thing: bool [N], whether that class is a thing.
      kept: bool [N], queries whose class is confident enough to be merged.
      area_limit: float32 [N], the query's thing or stuff area limit.
    """

    scores: tf.Tensor
    classes: tf.Tensor
    is_thing: tf.Tensor
    kept: tf.Tensor
    area_limit: tf.Tensor


class _Geometry(NamedTuple):
    """Where the image lies on the network's input canvas, and the size to return.

    The stride-4 logits cover `canvas` (the padded network input); the image fills its
    top-left `image` part; merging happens on the image resized to `output` (the
    evaluated frame size), or at stride 4 with merge_at_input_resolution=False.
    """

    canvas: tuple
    image: tuple
    output: tuple


def _classify_queries(
    class_logits: tf.Tensor,
    descriptor: datasets.DatasetDescriptor,
    options: evaluator_pb2.PostProcessingOptions,
) -> _Queries:
    """Scores, classes and the class-confidence test of every query."""
    class_probs = tf.nn.softmax(class_logits, axis=-1)[:, :-1]
    scores = tf.reduce_max(class_probs, axis=-1)
    classes = tf.argmax(class_probs, axis=-1, output_type=tf.int32)
    thing_ids = tf.constant(list(descriptor.thing_ids) or [-1], tf.int32)
    is_thing = tf.reduce_any(tf.equal(classes[:, tf.newaxis], thing_ids[tf.newaxis, :]), axis=1)
    if options.mode == "pixelwise_official":
        # The official panoptic_inference_pixel tests OBJECT_MASK_THRESHOLD on the class
        # score of things and stuff alike.
        kept = scores > options.mask_threshold
    else:
        kept = scores >= tf.where(
            is_thing, options.class_threshold_thing, options.class_threshold_stuff
        )
    area_limit = tf.cast(
        tf.where(is_thing, options.thing_area_limit, options.stuff_area_limit), tf.float32
    )
    return _Queries(scores, classes, is_thing, kept, area_limit)


def _same_size(a: tuple, b: tuple) -> bool:
    """Whether two sizes are statically equal: equal ints, or the same tensors."""
    return all(x is y or (isinstance(x, int) and x == y) for x, y in zip(a, b, strict=True))


def _image_is_output(geometry: _Geometry) -> bool:
    """Whether canvas, image and output are statically the same size (nothing to crop)."""
    return _same_size(geometry.canvas, geometry.image) and _same_size(
        geometry.image, geometry.output
    )


def _logits_on_output(logits: tf.Tensor, geometry: _Geometry) -> tf.Tensor:
    """float32 [T, h, w, C] stride-4 canvas logits -> [T, *output, C] logits of the image.

    Resized to the canvas, cropped to the image (padding never takes part in the merge,
    as the official code crops before merging), then resized to the output size.
    """
    if _image_is_output(geometry):
        return _resize_logits(logits, geometry.output)
    logits = _resize_logits(logits, geometry.canvas)[:, : geometry.image[0], : geometry.image[1]]
    if _same_size(geometry.image, geometry.output):  # Frames not resized (run-time sizes).
        return logits
    return _resize_logits(logits, geometry.output)


def _labels_on_output(labels: tf.Tensor, geometry: _Geometry) -> tf.Tensor:
    """int32 [T, h, w] stride-4 canvas labels -> [T, *output] labels of the image."""
    if _image_is_output(geometry):
        return _resize_nearest(labels, geometry.output)
    labels = _resize_nearest(labels, geometry.canvas)[:, : geometry.image[0], : geometry.image[1]]
    if _same_size(geometry.image, geometry.output):
        return labels
    return _resize_nearest(labels, geometry.output)


def _kept_logits_on_output(
    mask_logits: tf.Tensor, ids: tf.Tensor, geometry: _Geometry, at_input: bool
) -> tf.Tensor:
    """float32 [num_pixels, K]: the logits of the kept queries `ids` where merging happens.

    Only those channels are resized (resizing is per channel, so they equal the channels
    of the full resize).
    """
    kept = tf.gather(mask_logits, ids, axis=-1)
    if at_input:
        shape = tf.shape(mask_logits)
        kept = tf.cond(  # The resize rejects an image without channels.
            tf.size(ids) > 0,
            lambda: _logits_on_output(kept, geometry),
            lambda: tf.zeros(tf.concat([[shape[0]], geometry.output, [0]], axis=0)),
        )
    return tf.reshape(kept, [-1, tf.shape(ids)[0]])


def _maskwise_masks(
    mask_logits: tf.Tensor,
    flat_logits: tf.Tensor,
    ids: tf.Tensor,
    queries: _Queries,
    geometry: _Geometry,
    options: evaluator_pb2.PostProcessingOptions,
) -> mask_merging.ConfidentMasks:
    """The binary masks of the kept queries `ids`, built the cheaper of two ways.

    With few kept queries their channels are resized on their own; with more than half
    kept, the probabilities of all queries are taken from the logits already resized for
    the softmax, and the masks of the other queries are left empty. Both give the same
    probabilities and masks for the kept queries.
    """
    num_queries = mask_logits.shape[-1]
    at_input = options.merge_at_input_resolution

    def kept_only() -> mask_merging.ConfidentMasks:
        kept_logits = _kept_logits_on_output(mask_logits, ids, geometry, at_input)
        return mask_merging.confident_masks(flat_logits, kept_logits, ids, options.mask_threshold)

    def all_queries() -> mask_merging.ConfidentMasks:
        every = tf.range(num_queries)
        masks = mask_merging.confident_masks(
            flat_logits, flat_logits, every, options.mask_threshold
        )
        return masks._replace(on=masks.on & queries.kept[tf.newaxis, :])

    if op_set.builtin_only():
        # One path without tf.cond: LiteRT's XNNPACK delegate fails to prepare a graph
        # whose IF ops give run-time shapes (invoke raises when no query is kept).
        return all_queries()
    return tf.cond(2 * tf.size(ids) > num_queries, all_queries, kept_only)


def _native_geometry(geometry: _Geometry) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(canvas, image) as ints when the native pixel pass can merge this geometry.

    It crops the image from the canvas but does not resize it to another output size.
    """
    sizes = (geometry.canvas, geometry.image)
    if not all(isinstance(side, int) for size in sizes for side in size):
        return None
    return sizes if _same_size(geometry.image, geometry.output) else None


def _maskwise_sets(
    mask_logits: tf.Tensor,
    every_query_logits: Callable[[], tf.Tensor],
    ids: tf.Tensor,
    queries: _Queries,
    geometry: _Geometry,
    options: evaluator_pb2.PostProcessingOptions,
) -> tuple[tf.Tensor, mask_merging.MaskSets, tf.Tensor, tf.Tensor]:
    """The binary masks' sets, areas and confidences for the mask-wise merge.

    The native pixel pass (`native_merge`) computes them where it can; the TensorFlow ops
    compute them otherwise, and whenever the pass reports that it cannot.

    Returns:
      (int32 [C'] the queries of the masks (the confident ones, or all queries with the
      others' masks empty), their MaskSets, float32 [N] areas, float32 [N] confidences).
    """
    num_queries = mask_logits.shape[-1]

    def tensorflow_ops():
        masks = _maskwise_masks(mask_logits, every_query_logits(), ids, queries, geometry, options)
        sets = mask_merging.mask_sets(masks.on, num_queries)
        area, confidence = mask_merging.mask_area_and_confidence(masks, sets, num_queries)
        return masks.ids, sets, area, confidence

    sizes = _native_geometry(geometry)
    if not (
        options.merge_at_input_resolution
        and sizes
        and native_merge.usable(num_queries, options.mask_threshold)
    ):
        return tensorflow_ops()
    result = native_merge.pixel_pass(mask_logits, queries.kept, *sizes, options.mask_threshold)
    undecided = native_merge.decide_undecided(result, queries.kept, options.mask_threshold)

    def native():
        sets, probability_sums = native_merge.mask_sets(
            result, undecided, ids, options.mask_threshold
        )
        area, confidence = mask_merging.area_and_confidence(
            sets, ids, probability_sums, num_queries
        )
        return ids, sets, area, confidence

    return tf.cond(undecided.valid, native, tensorflow_ops)


def _merge(
    mask_logits: tf.Tensor,
    queries: _Queries,
    geometry: _Geometry,
    options: evaluator_pb2.PostProcessingOptions,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Merges the query masks into one segment map of the image.

    Returns:
      owner: int32 [T, *output]: the rank of each pixel's query, num_queries for void.
      order: int32 [num_queries]: the queries in rank order.
    """
    num_queries = mask_logits.shape[-1]
    at_input = options.merge_at_input_resolution
    ids = mask_merging.confident_ids(queries.kept)
    if at_input:
        merge_shape = tf.concat([tf.shape(mask_logits)[:1], geometry.output], axis=0)
    else:
        merge_shape = tf.shape(mask_logits)[:3]

    def every_query_logits() -> tf.Tensor:
        """float32 [num_pixels, N]: every query's logits where merging happens."""
        merged = _logits_on_output(mask_logits, geometry) if at_input else mask_logits
        return tf.reshape(merged, [-1, num_queries])

    if options.mode == "maskwise":
        mask_ids, sets, area, mask_confidence = _maskwise_sets(
            mask_logits, every_query_logits, ids, queries, geometry, options
        )
        ranking = (queries.scores**options.reorder_class_weight) * (
            mask_confidence**options.reorder_mask_weight
        )
    else:
        ranking = queries.scores
    order = tf.argsort(ranking, direction="DESCENDING", stable=True)
    rank = tf.math.invert_permutation(order)
    if options.mode == "maskwise":
        owner = mask_merging.maskwise_owner(
            mask_ids, sets, area, queries.area_limit, rank, options.overlap_threshold
        )
    elif options.mode == "pixelwise":
        owner = mask_merging.pixelwise_owner(
            every_query_logits(),
            queries.kept,
            queries.area_limit,
            rank,
            options.pixel_confidence_threshold,
        )
    elif op_set.builtin_only():  # All queries, the others masked: no tf.cond.
        owner = mask_merging.official_pixelwise_owner(
            tf.where(queries.kept, every_query_logits(), mask_merging.MASKED_LOGIT),
            tf.range(num_queries),
            rank,
            options.class_threshold_thing,
        )
    else:
        owner = mask_merging.official_pixelwise_owner(
            _kept_logits_on_output(mask_logits, ids, geometry, at_input),
            ids,
            rank,
            options.class_threshold_thing,
        )
    owner = tf.reshape(owner, merge_shape)
    if not at_input:
        owner = _labels_on_output(owner, geometry)
    return owner, order


def _object_table(
    owner: tf.Tensor,
    order: tf.Tensor,
    queries: _Queries,
    query_embeddings: tf.Tensor,
    descriptor: datasets.DatasetDescriptor,
    max_objects: int,
) -> ClipPanoptic:
    """Labels the segment map and lists its thing objects (clip-local ids in rank order)."""
    num_queries = queries.scores.shape[0]
    divisor = descriptor.label_divisor
    # Thing objects in rank order get clip-local ids 1..max_objects; rank num_queries is void.
    owner_area = op_set.histogram(owner, num_queries + 1)[:num_queries]
    ranked_is_thing = tf.gather(queries.is_thing, order)
    ranked_is_object = ranked_is_thing & (owner_area > 0)
    ranked_local = tf.cumsum(tf.cast(ranked_is_object, tf.int32)) * tf.cast(
        ranked_is_object, tf.int32
    )
    ranked_local = tf.where(ranked_local <= max_objects, ranked_local, 0)
    void = descriptor.ignore_label * divisor
    ranked_value = tf.where(
        ranked_is_thing & (ranked_local == 0),
        void,
        tf.gather(queries.classes, order) * divisor + ranked_local,
    )
    panoptic = op_set.lookup(tf.concat([ranked_value, [void]], axis=0), owner)
    instance_map = op_set.lookup(tf.concat([ranked_local, [0]], axis=0), owner)

    num_objects = tf.reduce_sum(tf.cast(ranked_local > 0, tf.int32))
    object_queries = tf.boolean_mask(order, ranked_local > 0)
    row_valid = tf.range(max_objects) < num_objects
    query_indices = tf.pad(object_queries, [[0, max_objects - num_objects]], constant_values=-1)
    safe_queries = tf.maximum(query_indices, 0)
    boxes, _ = object_features.object_boxes(instance_map, max_objects)
    return ClipPanoptic(
        panoptic=panoptic,
        num_objects=num_objects,
        query_indices=query_indices,
        local_ids=tf.where(row_valid, tf.range(1, max_objects + 1), 0),
        classes=tf.where(row_valid, tf.gather(queries.classes, safe_queries), -1),
        scores=tf.where(row_valid, tf.gather(queries.scores, safe_queries), 0.0),
        boxes=boxes,
        embeddings=tf.where(
            row_valid[:, tf.newaxis], tf.gather(query_embeddings, safe_queries), 0.0
        ),
    )


def _size(size: tuple | None) -> tuple | None:
    """(height, width) as Python ints, or the int32 scalar tensors given."""
    if size is None:
        return None
    return tuple(side if tf.is_tensor(side) else int(side) for side in size)


def panoptic_inference(
    mask_logits: tf.Tensor,
    class_logits: tf.Tensor,
    query_embeddings: tf.Tensor,
    output_size: tuple[int | tf.Tensor, int | tf.Tensor],
    descriptor: datasets.DatasetDescriptor,
    options: evaluator_pb2.PostProcessingOptions,
    canvas_size: tuple[int | tf.Tensor, int | tf.Tensor] | None = None,
    image_size: tuple[int | tf.Tensor, int | tf.Tensor] | None = None,
) -> ClipPanoptic:
    """Turns one clip's query predictions into a panoptic clip and its thing objects.

    Args:
      mask_logits: float32 [num_frames, h, w, num_queries] (stride 4 of canvas_size);
        num_queries static.
      class_logits: float32 [num_queries, num_classes + 1], void last.
      query_embeddings: float32 [num_queries, embedding_dim].
      output_size: (height, width) of the returned panoptic clip: ints, or int32 scalar
        tensors when the frame size is only known at run time (the exported model).
      descriptor: dataset constants (thing_ids, label_divisor, ignore_label).
      options: thresholds, area limits, mode and object capacity.
      canvas_size: (height, width) of the network input the logits were computed on
        (None: output_size).
      image_size: (height, width) of the image in the top-left corner of the canvas; the
        rest is padding, left out of the merge (None: canvas_size). The image is resized
        to output_size before merging (the evaluation resize undone).

    Returns:
      A ClipPanoptic; panoptic is int32 [num_frames, height, width] of output_size.

    Raises:
      ValueError: on an unknown mode, an out-of-range threshold, or a non-static number of
        queries.
    """
    _validate(options)
    mask_logits = tf.convert_to_tensor(mask_logits, tf.float32)
    class_logits = tf.convert_to_tensor(class_logits, tf.float32)
    query_embeddings = tf.convert_to_tensor(query_embeddings, tf.float32)
    if mask_logits.shape[-1] is None:
        raise ValueError("mask_logits needs a static number of queries (last axis).")
    output = _size(output_size)
    canvas = _size(canvas_size) or output
    geometry = _Geometry(canvas=canvas, image=_size(image_size) or canvas, output=output)
    queries = _classify_queries(class_logits, descriptor, options)
    owner, order = _merge(mask_logits, queries, geometry, options)
    return _object_table(
        owner, order, queries, query_embeddings, descriptor, options.max_objects_per_clip
    )
