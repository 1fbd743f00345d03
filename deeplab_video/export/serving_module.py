"""The tf.Module an exported Video-kMaX SavedModel serves: segment, then track, per clip.

Three signatures, all pure functions, so a server keeps no per-video state:

  segment_clip(frames)        uint8 [1, T, H, W, 3] -> the clip's panoptic map and objects
  initial_state()             -> the tracking state before a video's first clip
  track(**state, **segment)   -> video ids for the clip, and the state for the next clip

The client carries one dict of state tensors per video: it starts from `initial_state`,
passes it with every clip's `segment_clip` outputs to `track`, and keeps the state entries
of `track`'s outputs; `track`'s `output_frames` says which of the clip's frames are
results (StitchingOptions.output_frames). `segment_clip` runs
`video_tracker.ClipSegmenter.segment` and `track` runs `video_tracker.VideoRunner.track_clip`
(and `output_frames`), the functions the Python runner uses, so both give the same ids.

Names. segment_clip's outputs are the fields of `panoptic_inference.ClipPanoptic`, each
with a leading batch axis of 1. The state is `tracking.TrackingState` flattened: the memory
fields take the prefix "memory_" (memory_embeddings, ..., memory_next_id), the others keep
their names (previous_frame, previous_track_ids, previous_classes, num_clips).

H and W are free (any frame size) unless the module is made with a frame_size (the TFLite
export: every shape static, previous_frame [H, W] from the first clip on); T is the
experiment's eval clip_length. Inputs of a wrong dtype are rejected by the signature; a
wrong rank, batch size or clip length by run-time checks whose messages state the
expected shape.
"""

from collections.abc import Mapping

import tensorflow as tf
import tf_keras

from deeplab_video.post_processing import (
    memory_state,
    op_set,
    panoptic_inference,
    tracking,
    video_tracker,
)
from deeplab_video.protos import config_pb2

SEGMENT_CLIP = "segment_clip"
INITIAL_STATE = "initial_state"
TRACK = "track"
FRAMES = "frames"
MEMORY_PREFIX = "memory_"
# Outputs of `track` besides the new state.
TRACK_IDS = "track_ids"
VIDEO_PANOPTIC = "panoptic"
MATCHING_SPACE = "matching_space"
OUTPUT_FRAMES = "output_frames"

CLIP_NAMES = panoptic_inference.ClipPanoptic._fields
STATE_NAMES = tuple(MEMORY_PREFIX + name for name in memory_state.MemoryState._fields) + tuple(
    name for name in tracking.TrackingState._fields if name != "memory"
)


def flatten_state(state: tracking.TrackingState) -> dict[str, tf.Tensor]:
    """TrackingState -> {name: tensor} with the names of STATE_NAMES."""
    flat = {MEMORY_PREFIX + name: value for name, value in state.memory._asdict().items()}
    flat.update((name, value) for name, value in state._asdict().items() if name != "memory")
    return flat


def unflatten_state(flat: Mapping[str, tf.Tensor]) -> tracking.TrackingState:
    """{name: tensor} (at least STATE_NAMES) -> TrackingState."""
    memory = memory_state.MemoryState(
        **{name: flat[MEMORY_PREFIX + name] for name in memory_state.MemoryState._fields}
    )
    return tracking.TrackingState(
        memory=memory,
        **{name: flat[name] for name in tracking.TrackingState._fields if name != "memory"},
    )


class VideoServingModule(tf.Module):
    """Holds the inference network and exposes the three serving functions.

    Args:
      model: the Video-kMaX Keras model, built with inference_only=True and its weights
        restored.
      options: the experiment (eval clip_length, post-processing, stitching and memory).
      frame_size: (height, width) that every signature is fixed to (frames [1, T,
        height, width, 3]); None (the SavedModel): any frame size.

    Attributes:
      model_variables: the network's variables. They, not the Keras model, are what the
        module tracks: the SavedModel then holds the signatures and the weights only, and
        saving skips the per-layer Keras call traces (most of the export time) and
        loading their revival.
      clip_length: T, frames per clip.
      segment_clip, initial_state, track: the tf.functions behind the signatures.
    """

    def __init__(
        self,
        model: tf_keras.Model,
        options: config_pb2.ExperimentOptions,
        frame_size: tuple[int, int] | None = None,
    ):
        super().__init__(name="video_kmax_serving")
        self.model_variables = list(model.variables)
        self._runner = video_tracker.VideoRunner(model, options)
        self.clip_length = self._runner.clip_length
        self._frame_size = None if frame_size is None else tuple(frame_size)
        frames_shape = (
            [None, None, None, None, 3]
            if frame_size is None
            else [1, self.clip_length, *frame_size, 3]
        )
        self.segment_clip = tf.function(
            self._segment_clip,
            input_signature=[tf.TensorSpec(frames_shape, tf.uint8, name=FRAMES)],
        )
        clip_specs = {
            name: tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
            for name, tensor in self.segment_clip.get_concrete_function().structured_outputs.items()
        }
        self._embedding_dim = clip_specs["embeddings"].shape[-1]
        self.initial_state = tf.function(self._initial_state, input_signature=[])
        state_specs = {
            name: tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
            for name, tensor in self._initial_state().items()
        }
        if frame_size is None:
            state_specs["previous_frame"] = tf.TensorSpec(
                [None, None], tf.int32, name="previous_frame"
            )
        self._track_specs = {**state_specs, **clip_specs}
        self.track = tf.function(self._track)

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """The concrete functions to save as signatures, by signature name."""
        return {
            SEGMENT_CLIP: self.segment_clip.get_concrete_function(),
            INITIAL_STATE: self.initial_state.get_concrete_function(),
            TRACK: self.track.get_concrete_function(self._track_specs),
        }

    def _checked_frames(self, frames: tf.Tensor) -> tf.Tensor:
        """Checks frames at run time and returns them with the static shape [1, T, ?, ?, 3].

        Raises:
          InvalidArgumentError: (at run time) the batch is not 1, the clip does not hold T
            frames, a frame is empty, or the rank or channel count is wrong.
        """
        shape = tf.shape(frames)
        expected = (
            f"segment_clip expects frames uint8 [1, {self.clip_length}, height, width, 3]: one "
            f"clip of clip_length={self.clip_length} RGB frames, height and width >= 1; got shape"
        )
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(shape[:2], [1, self.clip_length]))
            & tf.reduce_all(shape[2:4] > 0),
            [expected, shape],
        )
        with tf.control_dependencies([check]):
            return tf.ensure_shape(frames, [1, self.clip_length, None, None, 3])

    def _segment_clip(self, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        """Segments one clip.

        Args:
          frames: uint8 [1, T, height, width, 3] RGB.

        Returns:
          The ClipPanoptic fields with a batch axis (K = max_objects_per_clip, D the
          embedding width): panoptic int32 [1, T, height, width] (semantic * label_divisor
          + clip-local instance id), num_objects int32 [1], query_indices int32 [1, K],
          local_ids int32 [1, K], classes int32 [1, K], scores float32 [1, K], boxes
          float32 [1, K, 4] (normalised xyxy), embeddings float32 [1, K, D]; rows past
          num_objects are padding.
        """
        segmenter = self._runner.segmenter
        # A SavedModel cannot hold the Python runner's native kernels (tf.numpy_function).
        with op_set.graph_ops_only():
            clip = segmenter.segment(self._checked_frames(frames)[0])
        # Every object row field is [K, ...]; query_indices comes out of a pad of run-time
        # length, so give it its static size for the signature (a reshape, which TFLite
        # has as a builtin op, unlike ensure_shape).
        clip = clip._replace(query_indices=tf.reshape(clip.query_indices, [segmenter.max_objects]))
        return {name: value[tf.newaxis] for name, value in clip._asdict().items()}

    def _initial_state(self) -> dict[str, tf.Tensor]:
        """The flattened TrackingState before a video's first clip (see STATE_NAMES).

        previous_frame is int32 [0, 0], or zeros [height, width] with a fixed frame_size
        (unread before the first clip either way).
        """
        state = self._runner.initial_state(self._embedding_dim)
        if self._frame_size is not None:
            state = state._replace(previous_frame=tf.zeros(self._frame_size, tf.int32))
        return flatten_state(state)

    def _track(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One tracking step.

        Args:
          inputs: the state (STATE_NAMES) and the clip's segment_clip outputs (CLIP_NAMES).

        Returns:
          The new state under STATE_NAMES, and track_ids int32 [1, K] (video id of each
          object row, -1 on padding), panoptic int32 [1, T, height, width] (semantic *
          label_divisor + video id), matching_space int32 [1] (M x N of the memory step),
          output_frames bool [1, T] (the frames of this clip that are results; the others
          come from another clip).

        Raises:
          InvalidArgumentError: (at run time) an input of the wrong shape, or a state of
            a video with another frame size.
        """
        inputs = {
            name: tf.ensure_shape(inputs[name], spec.shape)
            for name, spec in self._track_specs.items()
        }
        state = unflatten_state(inputs)
        clip = panoptic_inference.ClipPanoptic(**{name: inputs[name][0] for name in CLIP_NAMES})
        frame_size = tf.shape(clip.panoptic)[1:]
        check = tf.debugging.Assert(
            tf.equal(state.num_clips, 0)
            | tf.reduce_all(tf.equal(tf.shape(state.previous_frame), frame_size)),
            [
                "track: the state comes from frames of another size (previous_frame, then "
                "this clip's height and width); keep one state per video and start each "
                "video from initial_state",
                tf.shape(state.previous_frame),
                frame_size,
            ],
        )
        with tf.control_dependencies([check]), op_set.graph_ops_only():
            new_state, track_ids, panoptic, matching_space = self._runner.track_clip(state, clip)
        outputs = flatten_state(new_state)
        outputs[TRACK_IDS] = track_ids[tf.newaxis]
        outputs[VIDEO_PANOPTIC] = panoptic[tf.newaxis]
        outputs[MATCHING_SPACE] = matching_space[tf.newaxis]
        outputs[OUTPUT_FRAMES] = self._runner.output_frames(state.num_clips)[tf.newaxis]
        return outputs
