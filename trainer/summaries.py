"""Training monitoring: TensorBoard scalars and images, and progress log lines.

- Scalars: the orbit controller writes what the trainer returns after every loop (each
  loss term under `losses/`, the learning rate) and `steps_per_second`;
  `IntervalSummaryManager` keeps only the loops that end on a multiple of
  `save_summaries_steps`.
- Images (`ImageSummaryAction`, every `save_image_summaries_steps`): the frames of a fixed
  clip, its ground truth and the current model's prediction, coloured with the dataset's
  colour map (deeplab_video.post_processing.visualization).
- Log lines (`ProgressLogger`, every `log_every_steps`): step, losses, learning rate,
  steps/s and the estimated time to the last step. `log_orbit_messages_once` keeps the
  orbit controller from printing its messages besides logging them, and from logging a
  second line (its per-loop output) per interval.

`loop_lengths` makes every loop end on each of these intervals (and on checkpoint steps),
so an interval never falls inside a loop.
"""

import datetime
import time
from collections.abc import Callable, Mapping

import numpy as np
import orbit
import tensorflow as tf
from absl import logging

from deeplab_video import datasets
from deeplab_video.post_processing import visualization


def loop_lengths(*intervals: int) -> Callable[[int], int]:
    """Builds orbit's `steps_per_loop` callable: steps up to the next interval boundary.

    Args:
        *intervals: positive step intervals (zeros are ignored), e.g. steps_per_loop,
            save_checkpoints_steps, save_summaries_steps, log_every_steps.

    Returns:
        f(global_step) -> number of steps of the next loop (>= 1).

    Raises:
        ValueError: no positive interval.
    """
    positive = sorted({int(i) for i in intervals if i > 0})
    if not positive:
        raise ValueError("at least one positive interval is needed")

    def steps_to_next_boundary(step: int) -> int:
        return min(interval - int(step) % interval for interval in positive)

    return steps_to_next_boundary


class IntervalSummaryManager(orbit.utils.SummaryManager):
    """An orbit SummaryManager that writes only at multiples of an interval."""

    def __init__(self, summary_dir: str | None, global_step: tf.Variable, interval: int):
        """Initialises the manager.

        Args:
            summary_dir: the event-file folder (None: write nothing, e.g. on non-chief
                workers).
            global_step: the step counter the summaries are written at.
            interval: summaries are written when global_step % interval == 0.
        """
        super().__init__(summary_dir, tf.summary.scalar, global_step=global_step)
        self._step = global_step
        self._interval = max(int(interval), 1)

    def write_summaries(self, summary_dict: Mapping[str, object]) -> None:
        if int(self._step.numpy()) % self._interval == 0:
            super().write_summaries(summary_dict)


def log_orbit_messages_once() -> None:
    """Routes the orbit controller's messages through absl logging only, once each.

    orbit.Controller logs every message (restores, checkpoints, train / eval progress) and
    prints it to stdout as well. The messages that carry a loop's outputs repeat what
    `ProgressLogger` and the evaluator's report already log, so they show only at
    --verbosity=1. Safe to call more than once.

    Raises:
        AttributeError: orbit no longer has the message function this replaces.
    """
    if not callable(getattr(orbit.controller, "_log", None)):
        raise AttributeError("orbit.controller._log is gone; see log_orbit_messages_once")
    orbit.controller._log = _log_orbit_message


def _log_orbit_message(message: str) -> None:
    if "| output:" in message:
        logging.vlog(1, message)
    else:
        logging.info(message)


logging.ABSLLogger.register_frame_to_skip(__file__, _log_orbit_message.__name__)


class ProgressLogger:
    """Orbit train action: logs step, losses, learning rate, steps/s and ETA."""

    def __init__(self, global_step: tf.Variable, total_steps: int, every_n_steps: int):
        """Initialises the logger.

        Args:
            global_step: the training step counter.
            total_steps: the step training stops at (for the ETA).
            every_n_steps: log when the step is a multiple of this (and at the last step).
        """
        self._step = global_step
        self._total = total_steps
        self._every = max(int(every_n_steps), 1)
        self._last_step = int(global_step.numpy())
        self._last_time = time.monotonic()

    def __call__(self, output: Mapping[str, object]) -> None:
        step = int(self._step.numpy())
        if step % self._every and step < self._total:
            return
        now = time.monotonic()
        steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        remaining = max(self._total - step, 0)
        eta = remaining / steps_per_second if steps_per_second > 0 else float("inf")
        values = " | ".join(
            f"{name.split('/')[-1]}: {float(np.asarray(value)):.4g}"
            for name, value in sorted(output.items())
        )
        logging.info(
            "step %d/%d | %s | %.2f steps/s | ETA %s",
            step,
            self._total,
            values,
            steps_per_second,
            _format_duration(eta),
        )


class ImageSummaryAction:
    """Orbit train action: writes frames, ground truth and prediction as images."""

    def __init__(
        self,
        frames: np.ndarray,
        ground_truth: np.ndarray,
        predict: Callable[[np.ndarray], np.ndarray],
        descriptor: datasets.DatasetDescriptor,
        summary_manager: orbit.utils.SummaryManager,
        global_step: tf.Variable,
        every_n_steps: int,
    ):
        """Initialises the action.

        Args:
            frames: uint8 [num_frames, height, width, 3], a fixed clip to watch.
            ground_truth: int32 [num_frames, height, width] panoptic labels of the clip.
            predict: frames -> int32 [num_frames, height, width] panoptic prediction of
                the current model (e.g. `VideoRunner.run_sequence`).
            descriptor: the dataset (colour map, thing ids, label divisor).
            summary_manager: its writer receives the images.
            global_step: the training step counter.
            every_n_steps: write when the step is a multiple of this.
        """
        self._frames = np.asarray(frames, np.uint8)
        self._ground_truth = np.asarray(ground_truth)
        self._predict = predict
        self._descriptor = descriptor
        self._summary_manager = summary_manager
        self._step = global_step
        self._every = int(every_n_steps)

    def __call__(self, output: Mapping[str, object]) -> None:
        del output  # The images come from the model, not from the train output.
        step = int(self._step.numpy())
        if self._every <= 0 or step % self._every:
            return
        prediction = self._predict(self._frames)
        write_clip_images(
            self._frames,
            self._ground_truth,
            prediction,
            self._descriptor,
            step,
            self._summary_manager.summary_writer(),
        )
        self._summary_manager.flush()


def write_clip_images(
    frames: np.ndarray,
    ground_truth: np.ndarray,
    prediction: np.ndarray,
    descriptor: datasets.DatasetDescriptor,
    step: int,
    writer: tf.summary.SummaryWriter,
) -> None:
    """Writes one clip as three image summaries (one image per frame each).

    Args:
        frames: uint8 [num_frames, height, width, 3].
        ground_truth: int [num_frames, height, width] panoptic labels.
        prediction: int [num_frames, height, width] panoptic labels.
        descriptor: the dataset whose colour map colours the labels.
        step: the summary step.
        writer: where to write (tags images/frames, images/ground_truth,
            images/prediction).
    """

    def colour(panoptic: np.ndarray) -> np.ndarray:
        return np.stack([visualization.colorize_panoptic(p, descriptor) for p in panoptic])

    num_frames = len(frames)
    with writer.as_default():
        tf.summary.image("images/frames", frames, step=step, max_outputs=num_frames)
        tf.summary.image(
            "images/ground_truth", colour(ground_truth), step=step, max_outputs=num_frames
        )
        tf.summary.image("images/prediction", colour(prediction), step=step, max_outputs=num_frames)


def _format_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    return str(datetime.timedelta(seconds=round(seconds)))
