"""Runs an exported Video-kMaX TFLite model over whole videos, with the interpreter and numpy.

The runner needs no model code and no TensorFlow: it loads the flatbuffer written by
`deeplab_video.export.export_tflite` into the LiteRT interpreter (ai-edge-litert;
TensorFlow's tf.lite.Interpreter only where that package is missing) and calls its
signatures as `SavedModelVideoRunner` calls the SavedModel's: each frame
is one online clip (T = 1), `segment_clip` then `track`, with the state carried from
frame to frame, so both runners give the same ids. This file also works on its own,
copied next to a model.

The model takes one fixed frame size. Frames of another size are resized to it
(bilinear, corners aligned, DeepLab2's convention) and the panoptic maps are resized
back to the frame's size (nearest neighbour on the same grid); the aspect ratio is not
kept, so export at the videos' size (or their aspect ratio) for the best results.

    runner = TFLiteVideoRunner("/path/to/model.tflite")
    for prediction in runner.stream(frames):          # uint8 [height, width, 3] each
        prediction.frame_index, prediction.panoptic   # int32 [height, width]
"""

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import numpy as np

_SIGNATURES = ("segment_clip", "initial_state", "track")
# TFLite names a TensorFlow op run by the Flex delegate "Flex" + the op's name.
_FLEX_PREFIX = "Flex"


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


def flatbuffer_schema():
    """The TFLite flatbuffer schema module (ai-edge-litert's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def non_builtin_ops(model_content: bytes) -> list[str]:
    """The TensorFlow ops a TFLite model runs through the Flex delegate (sorted names).

    Args:
      model_content: the flatbuffer's bytes.
    """
    model = flatbuffer_schema().Model.GetRootAs(model_content, 0)
    names = set()
    for index in range(model.OperatorCodesLength()):
        custom = model.OperatorCodes(index).CustomCode()
        if custom and custom.decode().startswith(_FLEX_PREFIX):
            names.add(custom.decode()[len(_FLEX_PREFIX) :])
    return sorted(names)


def make_interpreter(model_content: bytes, num_threads: int | None = None):
    """The LiteRT interpreter of a model (TensorFlow's where ai-edge-litert is missing).

    Args:
      model_content: the flatbuffer's bytes.
      num_threads: CPU threads of the interpreter (None: its default).

    Raises:
      ValueError: the model runs TensorFlow ops through the Flex delegate, which neither
        interpreter has (export it with select_tf_ops=False).
      ImportError: neither ai-edge-litert nor TensorFlow is installed.
    """
    flex_ops = non_builtin_ops(model_content)
    if flex_ops:
        raise ValueError(
            f"The model runs TensorFlow ops through the Flex delegate ({', '.join(flex_ops)}), "
            f"which neither ai-edge-litert nor TensorFlow's tf.lite.Interpreter provides; "
            f"export it with builtin ops only (select_tf_ops=False)."
        )
    try:
        from ai_edge_litert import interpreter as litert

        interpreter_class = litert.Interpreter
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError as error:
            raise ImportError(
                "Running a TFLite model needs ai-edge-litert (pip install ai-edge-litert) "
                "or TensorFlow."
            ) from error
        interpreter_class = tf.lite.Interpreter
    return interpreter_class(model_content=model_content, num_threads=num_threads)


def _aligned_grid(out_size: int, in_size: int) -> np.ndarray:
    """float32 [out_size]: input coordinate of every output pixel, corners aligned.

    In float32, as TensorFlow's resize kernels and panoptic_inference compute it, so that
    rounding lands on the same pixels.
    """
    scale = np.float32(in_size - 1) / np.float32(max(out_size - 1, 1))
    return np.arange(out_size, dtype=np.float32) * scale


def resize_bilinear(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [height, width, 3] -> uint8 [*size, 3], bilinear with aligned corners."""
    pixels = frame.astype(np.float32)
    rows = _aligned_grid(size[0], frame.shape[0])
    cols = _aligned_grid(size[1], frame.shape[1])
    top = np.floor(rows).astype(np.int64)
    left = np.floor(cols).astype(np.int64)
    bottom = np.minimum(top + 1, frame.shape[0] - 1)
    right = np.minimum(left + 1, frame.shape[1] - 1)
    dy = (rows - top)[:, np.newaxis, np.newaxis]
    dx = (cols - left)[np.newaxis, :, np.newaxis]
    top_rows, bottom_rows = pixels[top], pixels[bottom]
    upper = top_rows[:, left] * (1 - dx) + top_rows[:, right] * dx
    lower = bottom_rows[:, left] * (1 - dx) + bottom_rows[:, right] * dx
    return np.clip(np.rint(upper * (1 - dy) + lower * dy), 0, 255).astype(np.uint8)


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """int32 [height, width] -> [*size], nearest neighbour on the aligned-corner grid."""
    half = np.float32(0.5)
    rows = np.floor(_aligned_grid(size[0], labels.shape[0]) + half).astype(np.int64)
    cols = np.floor(_aligned_grid(size[1], labels.shape[1]) + half).astype(np.int64)
    return labels[rows][:, cols]


class TFLiteVideoRunner:
    """Segments and tracks whole videos with an exported TFLite model.

    Args:
      model_path: a .tflite file written by `deeplab_video.export.export_tflite`.
      num_threads: CPU threads of the interpreter (None: its default).

    Attributes:
      clip_length: T, frames per clip (1: the export is online).
      clip_stride: frames between the starts of consecutive clips (1).
      frame_size: (height, width) the model takes.
      matching_space_sizes: M x N of every memory decoding step of the last video.

    Raises:
      ValueError: the model lacks one of the signatures segment_clip, initial_state,
        track, takes clips of more than one frame, or needs the Flex delegate.
      ImportError: see `make_interpreter`.
    """

    def __init__(self, model_path: str, num_threads: int | None = None):
        with open(model_path, "rb") as f:
            content = f.read()
        self._interpreter = make_interpreter(content, num_threads)
        found = self._interpreter.get_signature_list()
        missing = [name for name in _SIGNATURES if name not in found]
        if missing:
            raise ValueError(
                f"{model_path} is not a Video-kMaX TFLite export: it lacks the signatures "
                f"{missing} (found {sorted(found)})."
            )
        self._segment, self._initial_state, self._track = (
            self._interpreter.get_signature_runner(name) for name in _SIGNATURES
        )
        _, self.clip_length, height, width, _ = self._segment.get_input_details()["frames"]["shape"]
        if self.clip_length != 1:
            raise ValueError(
                f"{model_path} takes clips of {self.clip_length} frames; the TFLite runner "
                f"runs online models (clip_length 1)."
            )
        self.clip_stride = 1
        self.frame_size = (int(height), int(width))
        self.matching_space_sizes: list[int] = []
        self._warned_resize = False

    def _model_frame(self, frame: np.ndarray) -> np.ndarray:
        """The frame at the model's size (resized, with a one-time notice, if needed)."""
        if frame.shape[:2] == self.frame_size:
            return frame
        if not self._warned_resize:
            logging.getLogger(__name__).warning(
                "Frames of %dx%d are resized to the model's %dx%d (and the results back).",
                frame.shape[0],
                frame.shape[1],
                *self.frame_size,
            )
            self._warned_resize = True
        return resize_bilinear(frame, self.frame_size)

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[FramePrediction]:
        """Yields one FramePrediction per input frame, in order, reading frames lazily.

        Args:
          frames: uint8 [height, width, 3] RGB frames of one video, all of one size.

        Raises:
          TypeError: a frame is not uint8.
          ValueError: a frame is not [height, width, 3].
        """
        self.matching_space_sizes = []
        state = self._initial_state()
        for index, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.dtype != np.uint8:
                raise TypeError(f"frames must be uint8 RGB images; got {frame.dtype}.")
            if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
                raise ValueError(f"frames must be uint8 [height, width, 3]; got {frame.shape}.")
            clip = self._model_frame(frame)[np.newaxis, np.newaxis]
            outputs = self._track(**state, **self._segment(frames=clip))
            state = {name: outputs[name] for name in state}
            self.matching_space_sizes.append(int(outputs["matching_space"][0]))
            panoptic = outputs["panoptic"][0, 0]
            if panoptic.shape != frame.shape[:2]:
                panoptic = resize_nearest(panoptic, frame.shape[:2])
            yield FramePrediction(index, frame, panoptic)

    def run_sequence(self, frames: np.ndarray) -> np.ndarray:
        """Panoptic maps with video ids for a whole sequence.

        Args:
          frames: uint8 [num_frames, height, width, 3].

        Returns:
          int32 [num_frames, height, width], semantic * label_divisor + track id.
        """
        return np.stack([p.panoptic for p in self.stream(list(frames))])
