"""Video-Stitch: carries video ids across the frame that two near-online clips share.

With clips of T > 1 frames taken at stride T - 1, the previous clip's last frame and the
current clip's first frame are the same image (Video-kMaX, Shin et al., WACV 2024,
Sec. 3.2). Thing objects of the two clips are matched on that frame by mask overlap:

1. One joint histogram of (previous local id, current local id) pixel pairs over the
   frame, each pair encoded as `previous * offset + current` and counted in one histogram,
   gives the intersections; its row and column sums give the areas. This yields a [P, C]
   IoU (or Dice) matrix without building a single per-id mask. (Where
   `op_set.native_kernels()` may run, one native pass counts the pairs.)
2. Pairs of different classes (when class_check), padding rows and overlaps not above
   overlap_threshold are ruled out; a pair is stitched when each is the other's best
   remaining partner (mutual best).
3. A stitched current object takes the video id of its previous partner; the rest get -1
   and go to the memory buffer. Stuff has no object rows and keeps its class id.

The previous frame is kept with its clip-local instance ids plus the table of the video
ids those objects received, so the histogram always has a fixed (K + 1)^2 size, however
many ids the video has used.

Where this deliberately differs from the official `video_stitching_module.py`:
- The official code ranks ids greedily in both directions over all pairs (including
  zero-overlap pairs) and keeps the pairs both directions agree on, then drops pairs of
  different classes. Here class mismatches and overlaps at or below the threshold are
  removed before the best partners are chosen, so an overlapping object of another class
  cannot block a valid stitch, and zero-overlap pairs are never stitched. Mutual best is a
  subset of the official agreement set up to ties; for IoU > 0.5 the two coincide.
- The official `_iou(..., use_dice=True)` always measures Dice; here the measure is the
  StitchingOptions.overlap_measure option ("iou" by default).
"""

import types

import numpy as np
import tensorflow as tf

from deeplab_video import config
from deeplab_video.post_processing import op_set
from deeplab_video.protos import evaluator_pb2

_ABOVE_ROWS = "{} has instance ids above its {} object rows"


def _instances(frame: tf.Tensor, label_divisor: int, capacity: int, name: str) -> tf.Tensor:
    """Instance ids of a panoptic frame, checked to fit the histogram's offset.

    Args:
      frame: int32 [height, width], semantic * label_divisor + clip-local instance id.
      label_divisor: panoptic label divisor.
      capacity: largest valid instance id (object rows of the clip).
      name: argument name for the error message.

    Returns:
      int32 [height, width] instance ids in [0, capacity].
    """
    instances = tf.math.floormod(tf.convert_to_tensor(frame, tf.int32), label_divisor)
    check = tf.debugging.assert_less_equal(
        tf.reduce_max(instances),
        capacity,
        message=_ABOVE_ROWS.format(name, capacity),
    )
    with tf.control_dependencies([check]):
        return tf.identity(instances)


def _native_joint_histogram(
    kernels: types.ModuleType,
    previous_frame: tf.Tensor,
    current_frame: tf.Tensor,
    num_previous: int,
    num_current: int,
    label_divisor: int,
) -> tf.Tensor:
    """int32 [P + 1, C + 1]: pixels of each (previous, current) instance id pair, by the
    native kernels' `instance_pairs` in one pass (`_instances`' checks, at run time)."""

    def run(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, int]:
        out = np.empty((num_previous + 1, num_current + 1), np.int32)
        status = kernels.instance_pairs(
            previous,
            current,
            label_divisor,
            num_previous,
            num_current,
            out,
            op_set.native_threads(),
        )
        return out, status

    frames = [tf.convert_to_tensor(frame, tf.int32) for frame in (previous_frame, current_frame)]
    errors = {
        1: [_ABOVE_ROWS.format("previous_frame", num_previous)],
        2: [_ABOVE_ROWS.format("current_frame", num_current)],
    }
    shape = [num_previous + 1, num_current + 1]
    return op_set.native_call(run, frames, tf.int32, shape, errors)


def overlap_matrix(
    previous_frame: tf.Tensor,
    current_frame: tf.Tensor,
    num_previous: int,
    num_current: int,
    label_divisor: int,
    measure: str = "iou",
) -> tf.Tensor:
    """IoU or Dice of every (previous object, current object) pair on one frame.

    Args:
      previous_frame: int32 [height, width], panoptic with clip-local ids 1..num_previous.
      current_frame: int32 [height, width], panoptic with clip-local ids 1..num_current.
      num_previous: object rows P of the previous clip (static).
      num_current: object rows C of the current clip (static).
      label_divisor: panoptic label divisor.
      measure: "iou" or "dice".

    Returns:
      float32 [P, C]; row p is local id p + 1 of the previous clip, column c local id c + 1
      of the current clip; 0 where either object is absent from the frame.

    Raises:
      ValueError: if `measure` is unknown.
    """
    if measure not in config.OVERLAP_MEASURES:
        raise ValueError(
            f"stitching.overlap_measure must be one of {config.OVERLAP_MEASURES}; got '{measure}'."
        )
    kernels = op_set.native_kernels()
    if kernels is not None:
        joint = _native_joint_histogram(
            kernels, previous_frame, current_frame, num_previous, num_current, label_divisor
        )
    else:
        previous = _instances(previous_frame, label_divisor, num_previous, "previous_frame")
        current = _instances(current_frame, label_divisor, num_current, "current_frame")
        offset = num_current + 1
        codes = tf.reshape(previous * offset + current, [-1])
        joint = op_set.histogram(codes, (num_previous + 1) * offset)
        joint = tf.reshape(joint, [num_previous + 1, offset])
    joint = tf.cast(joint, tf.float32)
    intersection = joint[1:, 1:]
    previous_area = tf.reduce_sum(joint[1:, :], axis=1)[:, tf.newaxis]
    current_area = tf.reduce_sum(joint[:, 1:], axis=0)[tf.newaxis, :]
    if measure == "dice":
        return tf.math.divide_no_nan(2.0 * intersection, previous_area + current_area)
    return tf.math.divide_no_nan(intersection, previous_area + current_area - intersection)


def stitch(
    previous_frame: tf.Tensor,
    previous_track_ids: tf.Tensor,
    previous_classes: tf.Tensor,
    current_frame: tf.Tensor,
    current_classes: tf.Tensor,
    current_num_objects: tf.Tensor,
    label_divisor: int,
    options: evaluator_pb2.StitchingOptions,
    class_check: bool = True,
) -> tf.Tensor:
    """Video ids for the current clip's objects that continue a previous-clip object.

    Args:
      previous_frame: int32 [height, width], last frame of the previous clip with its
        clip-local instance ids (as `panoptic_inference` returned it, before relabelling).
      previous_track_ids: int32 [P], video id of each previous object row (-1: no object).
      previous_classes: int32 [P], class of each previous object row.
      current_frame: int32 [height, width], first frame of the current clip, clip-local ids.
      current_classes: int32 [C], class of each current object row.
      current_num_objects: int32 [], number of valid current rows.
      label_divisor: panoptic label divisor.
      options: overlap measure and threshold (`enabled` is the caller's switch).
      class_check: only objects of the same class are stitched (MemoryBufferOptions
        .class_check, shared with the memory buffer as the official SEMANTIC_CHECK).

    Returns:
      int32 [C]: the video id each current object continues, or -1 (unplaced, or padding).

    Raises:
      ValueError: on an unknown overlap measure or unknown static sizes.
    """
    previous_track_ids = tf.convert_to_tensor(previous_track_ids, tf.int32)
    current_classes = tf.convert_to_tensor(current_classes, tf.int32)
    num_previous = previous_track_ids.shape[0]
    num_current = current_classes.shape[0]
    if num_previous is None or num_current is None:
        raise ValueError("previous_track_ids and current_classes need static lengths.")
    if num_previous == 0 or num_current == 0:
        return tf.fill([num_current], -1)
    overlap = overlap_matrix(
        previous_frame,
        current_frame,
        num_previous,
        num_current,
        label_divisor,
        options.overlap_measure,
    )
    allowed = (previous_track_ids >= 0)[:, tf.newaxis] & (
        tf.range(num_current) < current_num_objects
    )[tf.newaxis, :]
    allowed &= overlap > options.overlap_threshold
    if class_check:
        allowed &= tf.equal(
            tf.convert_to_tensor(previous_classes, tf.int32)[:, tf.newaxis],
            current_classes[tf.newaxis, :],
        )
    score = tf.where(allowed, overlap, -1.0)
    best_previous = tf.argmax(score, axis=0, output_type=tf.int32)  # [C]
    best_current = tf.argmax(score, axis=1, output_type=tf.int32)  # [P]
    mutual = tf.equal(tf.gather(best_current, best_previous), tf.range(num_current))
    stitched = mutual & tf.reduce_any(allowed, axis=0)
    return tf.where(stitched, tf.gather(previous_track_ids, best_previous), -1)


def relabel(panoptic: tf.Tensor, track_ids: tf.Tensor, label_divisor: int) -> tf.Tensor:
    """Replaces clip-local instance ids by video ids; stuff and void stay as they are.

    Args:
      panoptic: int32 [..., height, width] with clip-local instance ids 1..K.
      track_ids: int32 [K], the video id of each object row (row k is local id k + 1).
      label_divisor: panoptic label divisor; video ids must stay below it.

    Returns:
      int32 tensor shaped like `panoptic`: semantic * label_divisor + video id.
    """
    panoptic = tf.convert_to_tensor(panoptic, tf.int32)
    track_ids = tf.convert_to_tensor(track_ids, tf.int32)
    check = tf.debugging.assert_less(
        tf.reduce_max(tf.concat([track_ids, [0]], axis=0)),
        label_divisor,
        message="video ids reached label_divisor; they no longer fit the panoptic encoding",
    )
    # Row k moves instance k + 1 to its video id: add (video id - (k + 1)).
    shift = tf.concat([[0], tf.maximum(track_ids, 0) - tf.range(1, tf.size(track_ids) + 1)], 0)
    with tf.control_dependencies([check]):
        return op_set.lookup(shift, panoptic, modulus=label_divisor, add_index=True)
