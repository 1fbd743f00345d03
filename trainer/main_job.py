r"""The README's main job: synthetic dataset -> training -> STQ / VPQ evaluation -> table.

  bash run.sh main                      # = python -m deeplab_video.trainer.main_job
  python -m deeplab_video.trainer.main_job --config_file configs/synthetic/tiny_online.textproto

Generates the built-in synthetic video dataset where the config's file patterns point
(unless it is there), trains the config's model with the orbit trainer (resuming from
--model_dir if a checkpoint is there), evaluates it on the validation split through the
video runner (clips, Video-Stitch, memory buffer), scores a trivial predictor on the same
split (every pixel the training set's majority stuff class), and prints both side by side.
"""

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Iterator

import numpy as np
from absl import app, flags, logging

from deeplab_video import config, datasets, entry_point
from deeplab_video.data import sequence_reader, synthetic
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import evaluator, train_lib

# Metrics of the results table, in order.
TABLE_METRICS = ("STQ", "AQ", "IoU", "VPQ", "VPQ_thing", "VPQ_stuff", "PQ")


@dataclasses.dataclass
class ConstantPrediction:
    """One frame's prediction, in the shape the evaluator reads (`.panoptic`)."""

    panoptic: np.ndarray


class MajorityStuffPredictor:
    """The trivial baseline: every pixel of every frame is one stuff class, instance 0."""

    def __init__(self, panoptic_label: int):
        self._label = panoptic_label

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[ConstantPrediction]:
        for frame in frames:
            yield ConstantPrediction(np.full(frame.shape[:2], self._label, np.int32))


def majority_stuff_class(
    options: config_pb2.DatasetOptions, descriptor: datasets.DatasetDescriptor
) -> int:
    """The stuff class covering the most pixels of a split."""
    counts = np.zeros(descriptor.num_classes, np.int64)
    for _, _, panoptic in sequence_reader.read_sequences(options.file_pattern):
        semantic = (panoptic // descriptor.label_divisor).ravel()
        semantic = semantic[semantic < descriptor.num_classes]
        counts += np.bincount(semantic, minlength=descriptor.num_classes)
    stuff = list(descriptor.stuff_ids)
    return stuff[int(np.argmax(counts[stuff]))]


def baseline_results(options: config_pb2.ExperimentOptions, model_dir: str) -> dict[str, float]:
    """Scores the majority-stuff-class predictor with the trainer's evaluator."""
    descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
    majority = majority_stuff_class(options.train_dataset_options, descriptor)
    logging.info("Trivial baseline: every pixel '%s'.", descriptor.class_names[majority])
    predictor = MajorityStuffPredictor(majority * descriptor.label_divisor)
    baseline = evaluator.Evaluator(
        predictor, options, _StepStub(), os.path.join(model_dir, "baseline")
    )
    return baseline.evaluate(num_steps=-1)


class _StepStub:
    """The global step the baseline evaluator names its results with (always 0)."""

    @staticmethod
    def numpy() -> int:
        return 0


def format_table(model: dict[str, float], baseline: dict[str, float]) -> str:
    """Model vs trivial baseline, one metric per row."""
    lines = [f"{'metric':<10} {'Video-kMaX':>11} {'majority-stuff':>15}", "-" * 38]
    for name in TABLE_METRICS:
        if name in model or name in baseline:
            lines.append(
                f"{name:<10} {model.get(name, float('nan')):>11.4f} "
                f"{baseline.get(name, float('nan')):>15.4f}"
            )
    return "\n".join(lines)


def run_main_job(config_file: str, model_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Generates data if needed, trains, evaluates, and prints the results table.

    Returns:
        {"model": scalars, "baseline": scalars, "seconds": {...}}.
    """
    options = config.load_config(config_file)
    model_dir = model_dir or os.path.join("experiments", options.experiment_name)
    data_dir = os.path.dirname(options.train_dataset_options.file_pattern[0])
    start = time.perf_counter()
    synthetic.ensure_synthetic_dataset(data_dir)
    generated = time.perf_counter()
    model_results = train_lib.run_experiment("train_and_eval", options, model_dir)
    trained = time.perf_counter()
    baseline = baseline_results(options, model_dir)
    seconds = {
        "data": round(generated - start, 1),
        "train_and_eval": round(trained - generated, 1),
        "total": round(time.perf_counter() - start, 1),
    }
    table = format_table(model_results, baseline)
    print(f"\nResults on the synthetic validation split ({config_file}):\n{table}")
    print(f"Wall time: {seconds}; checkpoints and metrics in {model_dir}")
    summary = {"model": model_results, "baseline": baseline, "seconds": seconds}
    with open(os.path.join(model_dir, "main_job_results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def define_flags() -> None:
    """Defines the job's flags (only when run: importing the module defines none)."""
    flags.DEFINE_string(
        "config_file", "configs/synthetic/tiny_near_online.textproto", "Experiment textproto."
    )
    flags.DEFINE_string(
        "model_dir", None, "Checkpoints and results (default experiments/<experiment_name>)."
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run_main_job(flags.FLAGS.config_file, flags.FLAGS.model_dir)


if __name__ == "__main__":
    define_flags()
    entry_point.run(main)
