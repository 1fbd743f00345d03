"""Video evaluation during training: whole sequences through the video runner, then metrics.

Every evaluation sequence is played from its first to its last frame through the video
runner (clip segmentation, Video-Stitch, memory buffer), and each predicted frame is scored
against its ground truth with STQ (AQ, SQ as class IoU), VPQ over the configured windows and
per-frame PQ. The numbers are those of `deeplab-video-eval` (the same result dict): the
scalars go to TensorBoard through the orbit controller, everything (per sequence, per
class) to `<model_dir>/eval/metrics.json` and `metrics_step_<step>.json`. Evaluation runs
on the host, one frame at a time, so memory does not grow with the length of a video.
"""

import collections
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import orbit
import tensorflow as tf
from absl import logging

from deeplab_video import datasets
from deeplab_video.analysis import query_centres
from deeplab_video.data import sequence_reader, tfrecord
from deeplab_video.evaluation import evaluate_lib, label_io, video_metrics
from deeplab_video.protos import config_pb2

METRICS_FILE = "metrics.json"
# Prefix of the per-class IoU scalars.
CLASS_IOU_PREFIX = "IoU_per_class/"


class FramePredictor(Protocol):
    """What the evaluator needs of `video_tracker.VideoRunner`."""

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Any]:
        """Yields one result with `.panoptic` int32 [height, width] per frame, in order."""


class QueryCentreRecorder:
    """A VideoRunner clip observer that gathers query centres only while evaluating."""

    def __init__(self, descriptor: datasets.DatasetDescriptor):
        self._descriptor = descriptor
        self.centres: query_centres.QueryCentres | None = None

    def __call__(self, *clip_observation: Any) -> None:
        if self.centres is not None:
            self.centres(*clip_observation)

    def start(self) -> None:
        self.centres = query_centres.QueryCentres(self._descriptor)

    def finish(self, output_prefix: str | None, title: str) -> None:
        """Writes `<output_prefix>.png` and `.json` (unless None) and stops recording."""
        centres, self.centres = self.centres, None
        if output_prefix and centres is not None:
            centres.plot(output_prefix + ".png", title)
            with tf.io.gfile.GFile(output_prefix + ".json", "w") as f:
                f.write(json.dumps(evaluate_lib.results_to_json(centres.to_json()), indent=1))


class Evaluator(orbit.AbstractEvaluator):
    """Scores the current model on the evaluation split (see the module docstring)."""

    def __init__(
        self,
        runner: FramePredictor,
        options: config_pb2.ExperimentOptions,
        global_step: tf.Variable,
        model_dir: str | None,
        centre_recorder: QueryCentreRecorder | None = None,
    ):
        """Initialises the evaluator.

        Args:
            runner: segments and tracks whole videos (`video_tracker.VideoRunner` of the
                model being trained).
            options: the experiment: eval_dataset_options (dataset, file_pattern) and
                evaluator_options (metrics, num_eval_sequences, save_predictions).
            global_step: names the results of each evaluation.
            model_dir: where results (and predictions) are written; None writes nothing
                (non-chief workers).
            centre_recorder: the runner's clip observer, when the query-centre plot is
                wanted (evaluator_options.save_query_centre_plot).

        Raises:
            KeyError: unknown evaluation dataset.
        """
        self._runner = runner
        self._dataset_options = options.eval_dataset_options
        self._options = options.evaluator_options
        self._descriptor = datasets.get_descriptor(self._dataset_options.dataset)
        self._global_step = global_step
        self._output_dir = os.path.join(model_dir, "eval") if model_dir else None
        self._label_format = "vipseg" if self._descriptor.name == "vipseg" else "kitti_step"
        self._centre_recorder = centre_recorder
        self._experiment_name = options.experiment_name

    def evaluate(self, num_steps: tf.Tensor) -> dict[str, float]:
        """Evaluates `num_steps` sequences (-1: as many as num_eval_sequences allows).

        Returns:
            The scalar results: STQ, AQ, IoU, VPQ (all, thing, stuff, per window), frame PQ
            (when metrics.frame_pq), num_sequences, num_frames and the per-class IoU under
            `IoU_per_class/<class name>`.

        Raises:
            FileNotFoundError, tfrecord.CorruptRecordError: unreadable evaluation records.
            ValueError: no sequence was evaluated.
        """
        limit = int(num_steps)
        if self._options.num_eval_sequences >= 0:
            limit = (
                self._options.num_eval_sequences
                if limit < 0
                else min(limit, self._options.num_eval_sequences)
            )
        step = int(self._global_step.numpy())
        metrics = video_metrics.VideoMetrics(
            self._descriptor,
            self._options.metrics.vpq_window_sizes,
            self._options.metrics.stq_offset,
            self._options.metrics.frame_pq,
        )
        if self._centre_recorder is not None:
            self._centre_recorder.start()
        self._score_sequences(limit, step, metrics)
        if metrics.num_frames == 0:
            raise ValueError(
                f"no evaluation frame in {list(self._dataset_options.file_pattern)} "
                f"(num_eval_sequences={self._options.num_eval_sequences})"
            )
        # The result dict of the evaluate CLI, so that both write the same JSON.
        results = metrics.results()
        logging.info("Evaluation at step %d:\n%s", step, evaluate_lib.format_report(results))
        self._write_json(step, results)
        if self._centre_recorder is not None:
            prefix = self._output_dir and os.path.join(
                self._output_dir, f"query_centres_step_{step:08d}"
            )
            self._centre_recorder.finish(prefix, f"{self._experiment_name}, step {step}")
        return _scalars(results)

    def _score_sequences(self, limit: int, step: int, metrics: video_metrics.VideoMetrics) -> None:
        """Predicts the first `limit` sequences (all if < 0) into the metrics."""
        sequences = sequence_reader.iter_sequences(self._dataset_options.file_pattern)
        for index, (sequence_id, frames) in enumerate(sequences):
            if 0 <= limit <= index:
                break
            for frame, panoptic in self._predict(frames):
                metrics.update(frame.panoptic, panoptic, sequence_id)
                if self._options.save_predictions and self._output_dir:
                    self._save_prediction(step, sequence_id, frame.frame_index, panoptic)

    def _predict(
        self, frames: Iterator[sequence_reader.Frame]
    ) -> Iterator[tuple[sequence_reader.Frame, np.ndarray]]:
        """Pairs every frame of a sequence with its prediction, reading frames lazily."""
        pending: collections.deque[sequence_reader.Frame] = collections.deque()

        def images() -> Iterator[np.ndarray]:
            for frame in frames:
                pending.append(frame)
                yield frame.image

        for prediction in self._runner.stream(images()):
            frame = pending.popleft()
            panoptic = np.asarray(prediction.panoptic)
            if panoptic.shape != frame.panoptic.shape:
                raise ValueError(
                    f"prediction of frame {frame.frame_index} has shape {panoptic.shape}, "
                    f"the ground truth {frame.panoptic.shape}"
                )
            yield frame, panoptic

    def _save_prediction(
        self, step: int, sequence_id: str, frame_index: int, panoptic: np.ndarray
    ) -> None:
        path = os.path.join(
            self._output_dir,
            f"predictions_step_{step:08d}",
            sequence_id,
            tfrecord.frame_id_string(frame_index) + ".png",
        )
        label_io.write_label_map(path, panoptic, self._label_format, self._descriptor)

    def _write_json(self, step: int, results: dict[str, Any]) -> None:
        if not self._output_dir:
            return
        tf.io.gfile.makedirs(self._output_dir)
        text = json.dumps(evaluate_lib.results_to_json({"step": step, **results}), indent=2)
        for name in (f"metrics_step_{step:08d}.json", METRICS_FILE):
            with tf.io.gfile.GFile(os.path.join(self._output_dir, name), "w") as f:
                f.write(text)


def _scalars(results: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of a result dict (non-finite values left out)."""
    scalars = {
        key: float(value)
        for key, value in results.items()
        if isinstance(value, int | float | np.number) and np.isfinite(value)
    }
    for entry in results["per_class"]:
        if np.isfinite(entry["IoU"]):
            scalars[CLASS_IOU_PREFIX + entry["name"]] = float(entry["IoU"])
    return scalars
