"""Runs an exported Video-kMaX SavedModel over whole videos, with TensorFlow and numpy only.

The runner needs no model code: it loads the SavedModel and calls its signatures
(see serving_module), so this file also works on its own, copied next to an export.
It cuts the video into the same clips as `post_processing.video_tracker.VideoRunner`:
T frames (T read from the export) starting every max(T - 1, 1) frames, the last clip
completed by repeating the last frame, carries the tracking state from clip to clip, and
yields the frames that `track` marks in `output_frames` (the export's
StitchingOptions.output_frames rule); both runners give the same panoptic maps.

    runner = SavedModelVideoRunner("/path/to/export")
    for prediction in runner.stream(frames):          # uint8 [height, width, 3] each
        prediction.frame_index, prediction.panoptic   # int32 [height, width]
"""

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

_SIGNATURES = ("segment_clip", "initial_state", "track")


@dataclasses.dataclass
class FramePrediction:
    """One frame's result (the fields of video_tracker.FramePrediction).

    Attributes:
      frame_index: index of the frame in the video.
      frame: uint8 [height, width, 3] RGB input frame.
      panoptic: int32 [height, width], semantic * label_divisor + video track id.
    """

    frame_index: int
    frame: np.ndarray
    panoptic: np.ndarray


class SavedModelVideoRunner:
    """Segments and tracks whole videos with an exported SavedModel.

    Args:
      saved_model_dir: a directory written by `deeplab_video.export.export_saved_model`.

    Attributes:
      clip_length: T, frames per clip (fixed by the export).
      clip_stride: frames between the starts of consecutive clips.
      matching_space_sizes: M x N of every memory decoding step of the last video.

    Raises:
      ValueError: the SavedModel lacks one of the signatures segment_clip,
        initial_state, track.
    """

    def __init__(self, saved_model_dir: str):
        self._loaded = tf.saved_model.load(saved_model_dir)
        missing = [name for name in _SIGNATURES if name not in self._loaded.signatures]
        if missing:
            raise ValueError(
                f"{saved_model_dir} is not a Video-kMaX export: it lacks the signatures "
                f"{missing} (found {sorted(self._loaded.signatures)})."
            )
        self._segment = self._loaded.signatures["segment_clip"]
        self._initial_state = self._loaded.signatures["initial_state"]
        self._track = self._loaded.signatures["track"]
        self.clip_length = int(self._segment.structured_outputs["panoptic"].shape[1])
        self.clip_stride = max(self.clip_length - 1, 1)
        self.matching_space_sizes: list[int] = []

    def _track_clip(self, state: dict | None, clip_frames: list[np.ndarray]):
        """Runs segment_clip then track on one clip.

        Returns:
          (the new state, panoptic int32 [T, H, W] with video ids, output_frames bool [T]:
          the frames of this clip that are results).
        """
        segmented = self._segment(frames=tf.constant(np.stack(clip_frames)[np.newaxis]))
        if state is None:
            state = self._initial_state()
        outputs = self._track(**state, **segmented)
        self.matching_space_sizes.append(int(outputs["matching_space"][0]))
        return (
            {name: outputs[name] for name in state},
            outputs["panoptic"][0].numpy(),
            outputs["output_frames"][0].numpy(),
        )

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[FramePrediction]:
        """Yields one FramePrediction per input frame, in order, reading frames lazily.

        Args:
          frames: uint8 [height, width, 3] RGB frames of one video, all of one size.

        Raises:
          TypeError: a frame is not uint8.
          InvalidArgumentError: a frame is not [height, width, 3] (raised by the model's
            input check).
        """
        self.matching_space_sizes = []
        state = None
        window: list[np.ndarray] = []
        next_index = 0  # index of window[0] in the video
        emitted = 0  # one past the last frame yielded
        iterator = iter(frames)
        exhausted = False
        while not exhausted:
            while len(window) < self.clip_length:
                frame = next(iterator, None)
                if frame is None:
                    exhausted = True
                    break
                frame = np.asarray(frame)
                if frame.dtype != np.uint8:
                    raise TypeError(f"frames must be uint8 RGB images; got {frame.dtype}.")
                window.append(frame)
            real = len(window)
            if real == 0 or (exhausted and next_index + real <= emitted):
                break
            clip_frames = window + [window[-1]] * (self.clip_length - real)
            state, panoptic, reported = self._track_clip(state, clip_frames)
            for offset in range(real):
                if reported[offset]:
                    yield FramePrediction(next_index + offset, window[offset], panoptic[offset])
                    emitted = next_index + offset + 1
            window = window[self.clip_stride :]
            next_index += self.clip_stride

    def run_sequence(self, frames: np.ndarray) -> np.ndarray:
        """Panoptic maps with video ids for a whole sequence.

        Args:
          frames: uint8 [num_frames, height, width, 3].

        Returns:
          int32 [num_frames, height, width], semantic * label_divisor + track id.
        """
        return np.stack([p.panoptic for p in self.stream(list(frames))])
