"""Runs a whole video through Video-kMaX clip by clip and yields video-consistent ids.

Clips hold T frames (`eval_dataset_options.clip_length`) and start every T - 1 frames, so
consecutive near-online clips share one frame (T = 1: online, stride 1). The last clip is
completed by repeating the video's last frame, as the official inference loop does; the
repeated frames are not yielded. `output_frames` says which clip gives each frame's
result (StitchingOptions.output_frames): the first clip that holds it ("first_clip"), or,
as the official loop, every frame of the clips that start at a multiple of T and none of
the others ("aligned_clips"). Every clip goes through

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

from deeplab_video import common, config, datasets
from deeplab_video.post_processing import panoptic_inference, tracking
from deeplab_video.protos import config_pb2

# Every side of a network input must be a multiple of this plus one (DeepLab2's 4k+1 rule
# at output stride 32).
INPUT_SIZE_MULTIPLE = 32
# Value of padded pixels (DeepLab2 pads with the mean pixel, 0 after normalisation).
PAD_PIXEL_VALUE = 127.5
# Added to scaled sides before flooring them (data.augmentation.RESIZE_SLACK).
_RESIZE_SLACK = 1e-3


# StitchingOptions.output_frames values (see `output_frames`).

Size = int | tf.Tensor  # a static side, or an int32 scalar tensor known at run time


def output_frames(
    clip_index: int | tf.Tensor, clip_length: int, clip_stride: int, rule: str
) -> tf.Tensor:
    """Which frames of a clip are its output (the others come from another clip).

    Args:
      clip_index: int or int32 [] tensor, the clip's index; it starts at frame
        clip_index * clip_stride.
      clip_length: T, frames per clip.
      clip_stride: frames between the starts of consecutive clips.
      rule: "first_clip" (each frame from the first clip that holds it) or
        "aligned_clips" (all frames of a clip starting at a multiple of T, none of the
        others: the official Video-kMaX inference loop).

    Returns:
      bool [clip_length].
    """
    if rule == "aligned_clips":
        aligned = tf.equal((clip_index * clip_stride) % clip_length, 0)
        return tf.fill([clip_length], aligned)
    return tf.equal(clip_index, 0) | (tf.range(clip_length) >= clip_length - clip_stride)


def resized_size(height: Size, width: Size, min_size: int, max_size: int) -> tuple[Size, Size]:
    """The frame size the network sees: the dataset pipeline's resize_to_range rule.

    The shorter side becomes min_size unless the longer would exceed max_size, in which
    case the longer becomes max_size (0: no bound; both 0: unchanged), as
    `data.augmentation.resize_to_range` computes it in float32 (a test pins the two equal).

    Args:
      height, width: Python ints, or int32 scalar tensors known only at run time.
      min_size, max_size: eval_dataset_options.min_resize_value / max_resize_value.

    Returns:
      (height, width): ints for int inputs, int32 scalar tensors otherwise.
    """
    if not min_size and not max_size:
        return height, width
    if tf.is_tensor(height) or tf.is_tensor(width):
        size = tf.cast(tf.stack([height, width]), tf.float32)
        scale = min_size / tf.reduce_min(size) if min_size else tf.constant(1.0)
        if max_size:
            scale = tf.minimum(scale, max_size / tf.reduce_max(size))
        new_size = tf.cast(tf.floor(size * scale + _RESIZE_SLACK), tf.int32)
        return new_size[0], new_size[1]
    size = np.array([height, width], np.float32)
    scale = np.float32(min_size) / size.min() if min_size else np.float32(1.0)
    if max_size:
        scale = min(scale, np.float32(max_size) / size.max())
    new_height, new_width = np.floor(size * scale + np.float32(_RESIZE_SLACK)).astype(int)
    return int(new_height), int(new_width)


def padded_size(height: Size, width: Size) -> tuple[Size, Size]:
    """The smallest (32k + 1, 32l + 1) size that holds a height x width frame.

    Python ints give ints; int32 scalar tensors (a frame size known only at run time, as
    in the exported model) give int32 scalar tensors.
    """

    def side(length: Size) -> Size:
        length = tf.maximum(length, 2) if tf.is_tensor(length) else max(length, 2)
        return -(-(length - 1) // INPUT_SIZE_MULTIPLE) * INPUT_SIZE_MULTIPLE + 1

    return side(height), side(width)


class ClipSegmenter:
    """Model + panoptic post-processing for one clip, as one tf.function.

    Args:
      model: the Video-kMaX Keras model (inference network); called as
        model(clip float32 [1, T, H, W, 3] 0..255, training=False) -> dict of outputs.
      options: the experiment (post-processing options, the eval dataset, and the model
        output that gives the objects' embeddings: memory_buffer.embedding_output).
    """

    def __init__(self, model: Callable[..., dict[str, Any]], options: config_pb2.ExperimentOptions):
        self._model = model
        self._descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
        self._post_processing = options.evaluator_options.post_processing
        self._embedding_output = options.evaluator_options.memory_buffer.embedding_output
        eval_dataset = options.eval_dataset_options
        self._resize_range = (eval_dataset.min_resize_value, eval_dataset.max_resize_value)
        self.segment = tf.function(self._segment)
        self.segment_with_outputs = tf.function(self._segment_with_outputs)

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
        return self._segment_with_outputs(frames)[0]

    def _segment_with_outputs(
        self, frames: tf.Tensor
    ) -> tuple[panoptic_inference.ClipPanoptic, dict[str, Any]]:
        """Segments one clip and also returns the network's outputs (for analysis tools).

        Args:
          frames: float32 or uint8 [T, height, width, 3], pixel values 0..255.

        Frames are resized as the evaluation dataset says (min/max_resize_value; the
        official VIPSeg evaluation scales 720p frames to 897 x 1594) and padded to the
        next 32k + 1 size; the masks are merged on the unpadded image brought back to the
        frames' size.

        Returns:
          (the ClipPanoptic of `_segment`, the model's output dict for the padded clip:
          'mask_logits' float32 [1, T, h, w, N] at stride 4 of the padded size
          `padded_size(*resized_size(height, width, ...))`, 'class_logits', ...).

        Raises:
          KeyError: (when traced) the model has no output named embedding_output.
        """
        frames = tf.cast(frames, tf.float32)
        # Static sides where known (the Python runner), run-time sides otherwise (export).
        height, width = (
            frames.shape[axis] if frames.shape[axis] is not None else tf.shape(frames)[axis]
            for axis in (1, 2)
        )
        image_height, image_width = resized_size(height, width, *self._resize_range)
        if any(self._resize_range):
            # The op of tf.compat.v1.image.resize_bilinear (which logs a deprecation).
            frames = tf.raw_ops.ResizeBilinear(
                images=frames, size=tf.stack((image_height, image_width)), align_corners=True
            )
        target_height, target_width = padded_size(image_height, image_width)
        padded = tf.pad(
            frames,
            [[0, 0], [0, target_height - image_height], [0, target_width - image_width], [0, 0]],
            constant_values=PAD_PIXEL_VALUE,
        )
        outputs = self._model(padded[tf.newaxis], training=False)
        if self._embedding_output not in outputs:
            raise KeyError(
                f"memory_buffer.embedding_output is '{self._embedding_output}', which the "
                f"model does not output (it gives {sorted(outputs)})."
            )
        clip = panoptic_inference.panoptic_inference(
            outputs["mask_logits"][0],
            outputs["class_logits"][0],
            outputs[self._embedding_output][0],
            (height, width),
            self._descriptor,
            self._post_processing,
            canvas_size=(target_height, target_width),
            image_size=(image_height, image_width),
        )
        return clip, outputs


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


ClipObserver = Callable[[panoptic_inference.ClipPanoptic, dict[str, Any], int, int], None]


class VideoRunner:
    """Segments and tracks whole videos with a Video-kMaX model.

    Args:
      model: the Video-kMaX Keras model (see ClipSegmenter).
      options: the experiment; clip length from eval_dataset_options, post-processing,
        stitching (with the output-frame rule) and memory-buffer settings from
        evaluator_options.
      clip_observer: optional analysis hook, called after every clip is segmented as
        clip_observer(clip, outputs, first_frame_index, num_frames): the clip's
        ClipPanoptic, the model outputs of ClipSegmenter.segment_with_outputs, the video
        index of the clip's first frame and how many of its frames are real (the rest
        repeat the video's last frame).

    Attributes:
      matching_space_sizes: M x N of every memory decoding step of the last video
        (the paper's Table 2).

    Raises:
      ValueError: stitching.output_frames is unknown, or "aligned_clips" with clips that
        do not tile the video (clip_length not a multiple of the clip stride).
    """

    def __init__(
        self,
        model: Callable[..., dict[str, Any]],
        options: config_pb2.ExperimentOptions,
        clip_observer: ClipObserver | None = None,
    ):
        self._clip_observer = clip_observer
        self.clip_length = max(options.eval_dataset_options.clip_length, 1)
        self.clip_stride = common.clip_stride(self.clip_length)
        self.output_rule = options.evaluator_options.stitching.output_frames
        if self.output_rule not in config.OUTPUT_FRAMES:
            raise ValueError(
                f"stitching.output_frames must be one of {config.OUTPUT_FRAMES}; got "
                f"'{self.output_rule}'."
            )
        if self.output_rule == "aligned_clips" and self.clip_length % self.clip_stride:
            raise ValueError(
                f"stitching.output_frames 'aligned_clips' reports only clips starting at "
                f"multiples of clip_length {self.clip_length}; with clips every "
                f"{self.clip_stride} frames it would skip frames. Use 'first_clip'."
            )
        self._segmenter = ClipSegmenter(model, options)
        descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
        self._params = tracking.TrackingParams.from_options(
            options.evaluator_options, descriptor.label_divisor
        )
        self._max_tracks = options.evaluator_options.memory_buffer.max_tracks
        self._track = tf.function(self.track_clip)
        self.matching_space_sizes: list[int] = []

    @property
    def segmenter(self) -> ClipSegmenter:
        """The clip segmenter (the exported `segment_clip` signature runs its `segment`)."""
        return self._segmenter

    def initial_state(self, embedding_dim: int) -> tracking.TrackingState:
        """The tracking state before a video's first clip.

        Args:
          embedding_dim: D, width of the model's query embeddings.
        """
        return tracking.initial_state(self._segmenter.max_objects, self._max_tracks, embedding_dim)

    def track_clip(
        self, state: tracking.TrackingState, clip: panoptic_inference.ClipPanoptic
    ) -> tuple[tracking.TrackingState, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One tracking step in TensorFlow ops; the exported `track` signature runs it too.

        Clips start every clip_stride frames, so the clip's first frame is
        state.num_clips * clip_stride.

        Args:
          state: the state after the previous clip (`initial_state` for the first one).
          clip: the clip's ClipPanoptic (ClipSegmenter.segment).

        Returns:
          tracking.track_clip's (new_state, track_ids int32 [K], panoptic int32
          [T, height, width] with video ids, matching_space int32 []).
        """
        first_frame_index = state.num_clips * self.clip_stride
        return tracking.track_clip(state, clip, first_frame_index, self._params)

    def output_frames(self, clip_index: int | tf.Tensor) -> tf.Tensor:
        """bool [T]: which frames of clip `clip_index` are its output (see `output_frames`)."""
        return output_frames(clip_index, self.clip_length, self.clip_stride, self.output_rule)

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[FramePrediction]:
        """Yields one FramePrediction per input frame, in order, reading frames lazily.

        Args:
          frames: uint8 [height, width, 3] RGB frames of one video, all of one size.
        """
        self.matching_space_sizes = []
        state = None
        window: list[np.ndarray] = []
        next_index = 0  # index of window[0] in the video
        emitted = 0  # one past the last frame yielded
        clip_index = 0
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
            clip_tensor = tf.constant(np.stack(clip_frames))
            if self._clip_observer is None:
                clip = self._segmenter.segment(clip_tensor)
            else:
                clip, outputs = self._segmenter.segment_with_outputs(clip_tensor)
                self._clip_observer(clip, outputs, next_index, real)
            if state is None:
                state = self.initial_state(clip.embeddings.shape[-1])
            state, _, panoptic, matching_space = self._track(state, clip)
            self.matching_space_sizes.append(int(matching_space))
            panoptic = panoptic.numpy()
            reported = self.output_frames(clip_index).numpy()
            for offset in range(real):
                if reported[offset]:
                    yield FramePrediction(next_index + offset, window[offset], panoptic[offset])
                    emitted = next_index + offset + 1
            window = window[self.clip_stride :]
            next_index += self.clip_stride
            clip_index += 1

    def run_sequence(self, frames: np.ndarray) -> np.ndarray:
        """Panoptic maps with video ids for a whole sequence.

        Args:
          frames: uint8 or float32 [num_frames, height, width, 3], values 0..255.

        Returns:
          int32 [num_frames, height, width], semantic * label_divisor + track id.
        """
        return np.stack([p.panoptic for p in self.stream(list(frames))])
