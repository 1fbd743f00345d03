"""Runs a whole video through Video-kMaX clip by clip and yields video-consistent ids.

Clips hold T frames (`eval_dataset_options.clip_length`) and start every T - 1 frames, so
consecutive near-online clips share one frame (T = 1: online, stride 1). The last clip is
completed by repeating the video's last frame, as the official inference loop does; the
repeated frames are not yielded. Every clip goes through

  ClipSegmenter: pad to a size the network accepts -> model -> panoptic_inference -> crop,
  tracking.track_clip: Video-Stitch on the shared frame -> memory buffer -> video ids,

both as `tf.function`s. The exported SavedModel's `segment_clip` and `track` signatures run
the same two functions (deeplab_video/export), so both paths give the same ids.
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from deeplab_video.data import datasets
from deeplab_video.post_processing import object_features, panoptic_inference, tracking
from deeplab_video.protos import config_pb2

# Every side of a network input must be a multiple of this plus one (DeepLab2's 4k+1 rule
# at output stride 32).
INPUT_SIZE_MULTIPLE = 32
# Value of padded pixels (DeepLab2 pads with the mean pixel, 0 after normalisation).
PAD_PIXEL_VALUE = 127.5


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The smallest (32k + 1, 32l + 1) size that holds a height x width frame."""

    def side(length: int) -> int:
        return -(-(length - 1) // INPUT_SIZE_MULTIPLE) * INPUT_SIZE_MULTIPLE + 1

    return side(max(height, 2)), side(max(width, 2))


class ClipSegmenter:
    """Model + panoptic post-processing for one clip, as one tf.function.

    Args:
      model: the Video-kMaX Keras model (inference network); called as
        model(clip float32 [1, T, H, W, 3] 0..255, training=False) -> dict of outputs.
      options: the experiment (post-processing options and the eval dataset).
    """

    def __init__(self, model: Callable[..., dict[str, Any]], options: config_pb2.ExperimentOptions):
        self._model = model
        self._descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
        self._post_processing = options.evaluator_options.post_processing
        self.segment = tf.function(self._segment)

    @property
    def max_objects(self) -> int:
        return self._post_processing.max_objects_per_clip

    def _segment(self, frames: tf.Tensor) -> panoptic_inference.ClipPanoptic:
        """Segments one clip.

        Args:
          frames: float32 or uint8 [T, height, width, 3], pixel values 0..255.

        Returns:
          The clip's ClipPanoptic at the frames' own size: panoptic int32
          [T, height, width] with clip-local ids, object rows padded to max_objects.
        """
        frames = tf.cast(frames, tf.float32)
        height, width = frames.shape[1], frames.shape[2]
        target_height, target_width = padded_size(height, width)
        padded = tf.pad(
            frames,
            [[0, 0], [0, target_height - height], [0, target_width - width], [0, 0]],
            constant_values=PAD_PIXEL_VALUE,
        )
        outputs = self._model(padded[tf.newaxis], training=False)
        clip = panoptic_inference.panoptic_inference(
            outputs["mask_logits"][0],
            outputs["class_logits"][0],
            outputs["query_embeddings"][0],
            (target_height, target_width),
            self._descriptor,
            self._post_processing,
        )
        if (target_height, target_width) == (height, width):
            return clip
        panoptic = clip.panoptic[:, :height, :width]
        divisor = self._descriptor.label_divisor
        is_thing = tf.reduce_any(
            tf.equal(
                (panoptic // divisor)[..., tf.newaxis],
                tf.constant(self._descriptor.thing_ids or (-1,), tf.int32),
            ),
            axis=-1,
        )
        instance_map = tf.where(is_thing, panoptic % divisor, 0)
        boxes, _ = object_features.object_boxes(instance_map, self.max_objects)
        return clip._replace(panoptic=panoptic, boxes=boxes)


@dataclasses.dataclass
class FramePrediction:
    """One frame's result.

    Attributes:
      frame_index: index of the frame in the video.
      frame: uint8 [height, width, 3] RGB input frame.
      panoptic: int32 [height, width], semantic * label_divisor + video track id.
    """

    frame_index: int
    frame: np.ndarray
    panoptic: np.ndarray


class VideoRunner:
    """Segments and tracks whole videos with a Video-kMaX model.

    Args:
      model: the Video-kMaX Keras model (see ClipSegmenter).
      options: the experiment; clip length from eval_dataset_options, post-processing,
        stitching and memory-buffer settings from evaluator_options.

    Attributes:
      matching_space_sizes: M x N of every memory decoding step of the last video
        (the paper's Table 2).
    """

    def __init__(self, model: Callable[..., dict[str, Any]], options: config_pb2.ExperimentOptions):
        self.clip_length = max(options.eval_dataset_options.clip_length, 1)
        self.clip_stride = max(self.clip_length - 1, 1)
        self._segmenter = ClipSegmenter(model, options)
        descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
        self._params = tracking.TrackingParams.from_options(
            options.evaluator_options, descriptor.label_divisor
        )
        self._max_tracks = options.evaluator_options.memory_buffer.max_tracks
        self._track = tf.function(self._track_step)
        self.matching_space_sizes: list[int] = []

    def _track_step(self, state, clip, first_frame_index):
        return tracking.track_clip(state, clip, first_frame_index, self._params)

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[FramePrediction]:
        """Yields one FramePrediction per input frame, in order, reading frames lazily.

        Args:
          frames: uint8 [height, width, 3] RGB frames of one video, all of one size.
        """
        self.matching_space_sizes = []
        state = None
        window: list[np.ndarray] = []
        next_index = 0  # index of window[0] in the video
        emitted = 0  # frames already yielded
        iterator = iter(frames)
        exhausted = False
        while not exhausted:
            while len(window) < self.clip_length:
                frame = next(iterator, None)
                if frame is None:
                    exhausted = True
                    break
                window.append(np.asarray(frame))
            real = len(window)
            if real == 0 or (exhausted and next_index + real <= emitted):
                break
            clip_frames = window + [window[-1]] * (self.clip_length - real)
            clip = self._segmenter.segment(tf.constant(np.stack(clip_frames)))
            if state is None:
                state = tracking.initial_state(
                    self._segmenter.max_objects, self._max_tracks, clip.embeddings.shape[-1]
                )
            state, _, panoptic, matching_space = self._track(
                state, clip, tf.constant(next_index, tf.int32)
            )
            self.matching_space_sizes.append(int(matching_space))
            panoptic = panoptic.numpy()
            for offset in range(real):
                if next_index + offset >= emitted:
                    yield FramePrediction(next_index + offset, window[offset], panoptic[offset])
                    emitted += 1
            window = window[self.clip_stride :]
            next_index += self.clip_stride

    def run_sequence(self, frames: np.ndarray) -> np.ndarray:
        """Panoptic maps with video ids for a whole sequence.

        Args:
          frames: uint8 or float32 [num_frames, height, width, 3], values 0..255.

        Returns:
          int32 [num_frames, height, width], semantic * label_divisor + track id.
        """
        return np.stack([p.panoptic for p in self.stream(list(frames))])
