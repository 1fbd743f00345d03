"""Per-object boxes and areas of a clip's instance map, in one pass per axis.

Tracking (Video-Stitch and the memory buffer) describes every thing object of a clip by a
class, a score, a query embedding and a box. The box of an object is the union of its
boxes over the frames of the clip, normalised to [0, 1] of the frame as
`[x0, y0, x1, y1]` (DESIGN.md).

Boxes are measured on pixel edges: an object covering pixel columns xmin..xmax has
x0 = xmin / width and x1 = (xmax + 1) / width, so a full-frame object is [0, 0, 1, 1] and
boxes measured at stride 4 and at the input resolution agree. The official Video-kMaX
code divides pixel centres instead (x1 = xmax / width), which shrinks every box by one
pixel on the right and bottom.

Nothing here loops over ids: one histogram of (id, row) pairs and one of (id, column)
pairs over the whole clip give every object's extent and area at once; where
`op_set.native_kernels()` may run, one native pass over the map gives them instead.
"""

import types

import numpy as np
import tensorflow as tf

from deeplab_video.post_processing import op_set

_ID_RANGE = "instance_map ids must lie in [0, {}] (max_objects)"


def _first_and_last(present: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Index of the first and last True along the last axis.

    Args:
      present: bool [num_ids, length].

    Returns:
      Two int32 [num_ids] tensors; both are 0 where a row holds no True.
    """
    length = tf.shape(present)[1]
    as_int = tf.cast(present, tf.int32)
    first = tf.argmax(as_int, axis=1, output_type=tf.int32)
    last = length - 1 - tf.argmax(tf.reverse(as_int, axis=[1]), axis=1, output_type=tf.int32)
    found = tf.reduce_any(present, axis=1)
    return tf.where(found, first, 0), tf.where(found, last, 0)


def _id_histogram(ids: tf.Tensor, coordinate: tf.Tensor, num_ids: int, length: tf.Tensor):
    """Counts (id, coordinate) pairs over the clip in one histogram.

    Args:
      ids: int32 [num_frames, height, width], values in [0, num_ids).
      coordinate: int32 tensor broadcastable to `ids`, values in [0, length).
      num_ids: number of ids (static).
      length: int32 scalar, the number of coordinate values.

    Returns:
      int32 [num_ids, length]: how many pixels of each id lie at each coordinate.
    """
    size = num_ids * length
    codes = tf.reshape(ids * length + coordinate, [-1])
    counts = op_set.histogram(codes, size)
    return tf.reshape(counts, [num_ids, length])


def object_boxes(instance_map: tf.Tensor, max_objects: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes and areas of the objects of a clip, as unions over its frames.

    Args:
      instance_map: int32 [num_frames, height, width]: k + 1 on the pixels of object row k
        (k < max_objects), 0 elsewhere (stuff, void).
      max_objects: capacity K of the object rows (static).

    Returns:
      boxes: float32 [max_objects, 4], normalised [x0, y0, x1, y1] on pixel edges; zeros
        for rows without pixels.
      areas: int32 [max_objects], pixels of each object summed over the frames.

    Raises:
      InvalidArgumentError: (at run time) if an id is negative or above max_objects.
    """
    instance_map = tf.convert_to_tensor(instance_map, tf.int32)
    num_ids = max_objects + 1
    height = tf.shape(instance_map)[1]
    width = tf.shape(instance_map)[2]
    kernels = op_set.native_kernels()
    if kernels is not None:
        extents = _native_extents(kernels, instance_map, num_ids)[1:]
        areas, x0, y0, x1, y1 = tf.unstack(extents, axis=1)
    else:
        rows = _id_histogram(
            instance_map, tf.range(height)[tf.newaxis, :, tf.newaxis], num_ids, height
        )
        cols = _id_histogram(
            instance_map, tf.range(width)[tf.newaxis, tf.newaxis, :], num_ids, width
        )
        # Ids above max_objects fall outside the histogram (negative ones fail in
        # bincount), so counting the histogram checks the whole map without another pass.
        check = tf.debugging.assert_equal(
            tf.reduce_sum(rows), tf.size(instance_map), message=_ID_RANGE.format(max_objects)
        )
        with tf.control_dependencies([check]):
            rows = tf.identity(rows)
        rows, cols = rows[1:], cols[1:]
        y0, y1 = _first_and_last(rows > 0)
        x0, x1 = _first_and_last(cols > 0)
        areas = tf.reduce_sum(rows, axis=1)
    present = tf.cast(areas > 0, tf.float32)[:, tf.newaxis]
    scale = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    edges = tf.cast(tf.stack([x0, y0, x1 + 1, y1 + 1], axis=1), tf.float32)
    return edges / scale * present, areas


def _native_extents(kernels: types.ModuleType, instance_map: tf.Tensor, num_ids: int) -> tf.Tensor:
    """int32 [num_ids, 5]: each id's pixel count, first column, first row, last column and
    last row (0 for an id without pixels), from the native kernels' `id_extents`.

    Raises:
      InvalidArgumentError: (at run time) an id lies outside [0, num_ids).
    """

    def run(ids: np.ndarray) -> tuple[np.ndarray, int]:
        out = np.empty((num_ids, 5), np.int32)
        return out, kernels.id_extents(ids, *ids.shape, num_ids, out, op_set.native_threads())

    errors = {-1: [_ID_RANGE.format(num_ids - 1)]}
    return op_set.native_call(run, [instance_map], tf.int32, [num_ids, 5], errors)
