"""Python facade over the memory buffer's pure TensorFlow update (LA-MB / naive-MB).

`MemoryBuffer` holds one video's `memory_state.MemoryState` between calls and runs
`memory_state.update` as a `tf.function`; all association logic lives there. Use one
instance per video (or `reset()` between videos).

    mb = MemoryBuffer(kind="location_aware", similarity_threshold=0.7)
    ids = mb.associate(frame_index, boxes, embeddings, classes, stitched_ids)
    mb.matching_space_sizes   # one M * N value per call (supplementary Table 2)
"""

import functools

import numpy as np
import tensorflow as tf

from deeplab_video.post_processing import memory_state
from deeplab_video.protos import evaluator_pb2

_DEFAULTS = evaluator_pb2.MemoryBufferOptions()


@functools.cache
def _compiled_update(
    kind: str, box_distance: str, assignment: str, class_check: bool, new_object_insertion: str
) -> tf.types.experimental.PolymorphicFunction:
    """`memory_state.update` as one tf.function per structural setting.

    Sizes (N, M, D) are left open and the numeric settings (threshold, temperature,
    momentum, refresh_frames) are scalar inputs, so every buffer of the process with the
    same kind, box distance, assignment, class check and insertion rule shares one
    traced graph.
    """
    scalar = tf.TensorSpec([], tf.float32)

    @tf.function(
        input_signature=[
            memory_state.state_spec(),
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.bool),
            tf.TensorSpec([], tf.int32),
            scalar,
            scalar,
            scalar,
            tf.TensorSpec([], tf.int32),
        ]
    )
    def run(
        state,
        boxes,
        embeddings,
        classes,
        stitched_ids,
        valid,
        frame_index,
        similarity_threshold,
        temperature,
        momentum,
        refresh_frames,
    ):
        params = memory_state.MemoryParams(
            kind=kind,
            similarity_threshold=similarity_threshold,
            temperature=temperature,
            momentum=momentum,
            refresh_frames=refresh_frames,
            box_distance=box_distance,
            assignment=assignment,
            class_check=class_check,
            new_object_insertion=new_object_insertion,
        )
        return memory_state.update(
            state, boxes, embeddings, classes, stitched_ids, valid, frame_index, params
        )

    return run


class MemoryBuffer:
    """Associates each clip's unstitched thing objects with earlier tracks.

    Attributes:
      params: the static association settings (`memory_state.MemoryParams`).
      max_tracks: capacity M of the memory.
      matching_space_sizes: list of int, M * N of every `associate` call, where M is the
        number of valid entries not claimed by stitched objects and N the number of
        objects decoded (0 when nothing was decoded).
    """

    def __init__(
        self,
        kind: str = _DEFAULTS.kind,
        similarity_threshold: float = _DEFAULTS.similarity_threshold,
        temperature: float = _DEFAULTS.temperature,
        momentum: float = _DEFAULTS.momentum,
        refresh_frames: int = _DEFAULTS.refresh_frames,
        max_tracks: int = _DEFAULTS.max_tracks,
        box_distance: str = _DEFAULTS.box_distance,
        assignment: str = _DEFAULTS.assignment,
        class_check: bool = _DEFAULTS.class_check,
        new_object_insertion: str = _DEFAULTS.new_object_insertion,
    ):
        """Creates an empty memory; defaults are MemoryBufferOptions' defaults.

        Raises:
          ValueError: on an unknown kind, box_distance, assignment or
            new_object_insertion, or a value out of range (non-positive temperature or
            max_tracks, momentum outside [0, 1]).
        """
        if max_tracks < 1:
            raise ValueError(f"memory_buffer.max_tracks must be positive; got {max_tracks}.")
        self.params = memory_state.MemoryParams(
            kind=kind,
            similarity_threshold=float(similarity_threshold),
            temperature=float(temperature),
            momentum=float(momentum),
            refresh_frames=int(refresh_frames),
            box_distance=box_distance,
            assignment=assignment,
            class_check=bool(class_check),
            new_object_insertion=new_object_insertion,
        ).validated()
        self.max_tracks = int(max_tracks)
        self._update = _compiled_update(
            self.params.kind,
            self.params.box_distance,
            self.params.assignment,
            self.params.class_check,
            self.params.new_object_insertion,
        )
        self.reset()

    @classmethod
    def from_options(cls, options: evaluator_pb2.MemoryBufferOptions) -> "MemoryBuffer":
        """Builds a buffer from a MemoryBufferOptions proto."""
        params = memory_state.MemoryParams.from_options(options)
        return cls(max_tracks=options.max_tracks, **params._asdict())

    def reset(self) -> None:
        """Forgets every track (start of a new video); ids count from 1 again."""
        self.state: memory_state.MemoryState | None = None
        self.matching_space_sizes: list[int] = []

    def associate(
        self,
        frame_index: int,
        boxes: np.ndarray,
        embeddings: np.ndarray,
        classes: np.ndarray,
        stitched_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Gives every thing object of a clip its track id and updates the memory.

        Args:
          frame_index: index of the clip (its first frame) in the video.
          boxes: float [N, 4], normalised xyxy boxes.
          embeddings: float [N, D], query embeddings (D fixed for the whole video).
          classes: int [N], semantic classes (thing classes only).
          stitched_ids: int [N], the id Video-Stitch gave each object, or -1; None means
            no object was stitched (online, T = 1).

        Returns:
          int32 [N] track ids; new tracks count up from 1.

        Raises:
          ValueError: if embeddings are not 2-D, the inputs disagree in N, or D changes
            within a video.
        """
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [N, D]; got shape {embeddings.shape}.")
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        classes = np.asarray(classes, np.int32).reshape(-1)
        num_objects = classes.shape[0]
        if stitched_ids is None:
            stitched_ids = np.full([num_objects], -1, np.int32)
        stitched_ids = np.asarray(stitched_ids, np.int32).reshape(-1)
        if not boxes.shape[0] == embeddings.shape[0] == stitched_ids.shape[0] == num_objects:
            raise ValueError(
                "boxes, embeddings, classes and stitched_ids must have the same length; got "
                f"{boxes.shape[0]}, {embeddings.shape[0]}, {num_objects}, "
                f"{stitched_ids.shape[0]}."
            )
        if self.state is None:
            self.state = memory_state.initial_state(self.max_tracks, embeddings.shape[1])
        elif self.state.embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} channels; this video's memory holds "
                f"{self.state.embeddings.shape[1]} (call reset() for a new video)."
            )
        self.state, track_ids, matching_space = self._update(
            self.state,
            boxes,
            embeddings,
            classes,
            stitched_ids,
            np.ones([num_objects], bool),
            np.int32(frame_index),
            np.float32(self.params.similarity_threshold),
            np.float32(self.params.temperature),
            np.float32(self.params.momentum),
            np.int32(self.params.refresh_frames),
        )
        self.matching_space_sizes.append(int(matching_space))
        return track_ids.numpy()
