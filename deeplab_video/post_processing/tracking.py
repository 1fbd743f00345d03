"""One tracking step per clip: Video-Stitch, then the memory buffer, then relabelling.

The whole tracking state of a video is a `TrackingState` of tensors, and `track_clip` is a
pure function `(state, clip) -> (new_state, track_ids, panoptic with video ids)` of
TensorFlow ops, so the Python video runner and the exported SavedModel's `track`
signature run the same code and give the same ids.

Per clip (paper Sec. 3.2 and Algorithm 1 of the supplement):
  1. Video-Stitch (near-online, T > 1): objects of the clip's first frame that overlap an
     object of the previous clip's last frame (the same video frame) take its video id.
  2. The memory buffer (LA-MB or naive-MB) associates the objects stitching could not
     place with the tracks it holds, or gives them new ids, and updates its entries.
  3. The clip's clip-local instance ids are replaced by the video ids.
"""

from typing import NamedTuple

import tensorflow as tf

from deeplab_video.post_processing import memory_state, panoptic_inference, video_stitch
from deeplab_video.protos import evaluator_pb2


class TrackingState(NamedTuple):
    """Everything one video's tracking carries from clip to clip.

    Attributes:
      memory: the memory buffer (fixed capacity max_tracks).
      previous_frame: int32 [height, width], the previous clip's last frame with
        clip-local instance ids ([0, 0] before the first clip).
      previous_track_ids: int32 [K], video id of each previous object row (-1: none).
      previous_classes: int32 [K], class of each previous object row (-1: none).
      num_clips: int32 [], clips tracked so far.
    """

    memory: memory_state.MemoryState
    previous_frame: tf.Tensor
    previous_track_ids: tf.Tensor
    previous_classes: tf.Tensor
    num_clips: tf.Tensor


class TrackingParams(NamedTuple):
    """Static, hashable settings of the tracking step (so tf.function can trace on them).

    Attributes:
      memory: association settings of the memory buffer.
      stitching_enabled: whether Video-Stitch runs (on clips of T > 1).
      overlap_measure: "iou" or "dice" (StitchingOptions.overlap_measure).
      overlap_threshold: minimum overlap of a stitch (StitchingOptions.overlap_threshold).
      label_divisor: panoptic label divisor of the dataset.
    """

    memory: memory_state.MemoryParams
    stitching_enabled: bool
    overlap_measure: str
    overlap_threshold: float
    label_divisor: int

    @classmethod
    def from_options(
        cls, options: evaluator_pb2.EvaluatorOptions, label_divisor: int
    ) -> "TrackingParams":
        """Reads the settings of an EvaluatorOptions proto."""
        return cls(
            memory=memory_state.MemoryParams.from_options(options.memory_buffer),
            stitching_enabled=options.stitching.enabled,
            overlap_measure=options.stitching.overlap_measure,
            overlap_threshold=options.stitching.overlap_threshold,
            label_divisor=label_divisor,
        )

    def stitching_options(self) -> evaluator_pb2.StitchingOptions:
        return evaluator_pb2.StitchingOptions(
            enabled=self.stitching_enabled,
            overlap_measure=self.overlap_measure,
            overlap_threshold=self.overlap_threshold,
        )


def initial_state(max_objects: int, max_tracks: int, embedding_dim: int) -> TrackingState:
    """The state before a video's first clip.

    Args:
      max_objects: K, object rows per clip (PostProcessingOptions.max_objects_per_clip).
      max_tracks: M, memory capacity (MemoryBufferOptions.max_tracks).
      embedding_dim: D, width of the query embeddings.
    """
    return TrackingState(
        memory=memory_state.initial_state(max_tracks, embedding_dim),
        previous_frame=tf.zeros([0, 0], tf.int32),
        previous_track_ids=tf.fill([max_objects], -1),
        previous_classes=tf.fill([max_objects], -1),
        num_clips=tf.constant(0, tf.int32),
    )


def track_clip(
    state: TrackingState,
    clip: panoptic_inference.ClipPanoptic,
    first_frame_index: tf.Tensor,
    params: TrackingParams,
) -> tuple[TrackingState, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Assigns video ids to one clip's thing objects and updates the state.

    Args:
      state: the state after the previous clip (`initial_state` for the first one).
      clip: the clip's panoptic result; clip.panoptic is int32 [T, height, width] with
        clip-local instance ids, object rows padded to K.
      first_frame_index: int32 [], index of the clip's first frame in the video.
      params: stitching and memory settings.

    Returns:
      new_state: the state to pass with the next clip.
      track_ids: int32 [K], the video id of each object row (-1 on padding rows).
      panoptic: int32 [T, height, width], clip.panoptic with video ids (stuff keeps
        instance 0, so one id per stuff class over the video).
      matching_space: int32 [], M x N of the memory's decoding step (Table 2).
    """
    num_rows = clip.classes.shape[0]
    valid = tf.range(num_rows) < clip.num_objects
    stitch_enabled = params.stitching_enabled and clip.panoptic.shape[0] != 1
    if stitch_enabled:
        # Before the first clip there is no previous frame: stitch against an empty one
        # (all previous rows are -1, so nothing is stitched).
        previous_frame = tf.cond(
            state.num_clips > 0,
            lambda: state.previous_frame,
            lambda: tf.zeros_like(clip.panoptic[0]),
        )
        stitched_ids = video_stitch.stitch(
            previous_frame,
            state.previous_track_ids,
            state.previous_classes,
            clip.panoptic[0],
            clip.classes,
            clip.num_objects,
            params.label_divisor,
            params.stitching_options(),
            class_check=params.memory.class_check,
        )
    else:
        stitched_ids = tf.fill([num_rows], -1)
    memory, track_ids, matching_space = memory_state.update(
        state.memory,
        clip.boxes,
        clip.embeddings,
        clip.classes,
        stitched_ids,
        valid,
        first_frame_index,
        params.memory,
    )
    new_state = TrackingState(
        memory=memory,
        previous_frame=clip.panoptic[-1],
        previous_track_ids=tf.where(valid, track_ids, -1),
        previous_classes=clip.classes,
        num_clips=state.num_clips + 1,
    )
    panoptic = video_stitch.relabel(clip.panoptic, track_ids, params.label_divisor)
    return new_state, track_ids, panoptic, matching_space
