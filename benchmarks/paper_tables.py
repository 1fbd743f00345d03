r"""The paper's claims in miniature: supplementary Tables 1 and 2 on the built-in data.

Video-kMaX's supplement (Shin et al., WACV 2024) claims that k-means cross-attention beats
latent-memory cross-attention, which beats normal cross-attention (Table 1: 73.9 / 70.0 /
68.4 STQ on KITTI-STEP), that LA-MB adds to clip-kMaX (74.7), and that LA-MB's matching
space is several times smaller than naive-MB's (Table 2). This script checks all three at
the tiny scale:

1. Data: the synthetic train / val dataset where the config points (--data_dir), and the
   crowd split (--crowd_dir: look-alikes crossing, hidden and reappearing), generated
   if missing.
2. Training: the config three times, model_options.transformer_decoder.cross_attention
   "kmeans", "latent_memory" and "softmax", with the same seed, data and --steps, through
   `train_lib.run_experiment`, each into <output_dir>/models/<kind>-<config digest>.
3. Evaluation of each model on the val and crowd splits. Every clip is segmented once and
   tracked in every setting (`matching_space.SettingTrackers`): Video-Stitch alone,
   LA-MB and naive-MB with and without Video-Stitch, and Table 2's settings. Each
   setting is scored with STQ (AQ, IoU), CLEAR-MOT identity switches and the sizes of
   its matching spaces.
4. Tables: Table 1 (STQ beside the paper's), the tracking comparison per split (STQ, AQ,
   ID switches) and Table 2 (average and max M x N at tau = 1000 and at the best tau),
   printed and written to <output_dir>/results.json.

<output_dir>/manifest.json records finished trainings and evaluations (with a digest of
everything they depend on), so a re-run trains nothing twice and re-evaluates only what
changed (--reevaluate: everything, e.g. after a change of the tracking code); an
interrupted training resumes from its last checkpoint. Progress and the ETA
are logged.

    python benchmarks/paper_tables.py --output_dir=experiments/paper_tables
    python benchmarks/paper_tables.py --output_dir=/tmp/paper --steps=100 --num_sequences=2
"""

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import device_info
import tensorflow as tf
from absl import app, flags, logging
from google.protobuf import text_format

from deeplab_video import config, datasets, entry_point
from deeplab_video.analysis import matching_space
from deeplab_video.data import sequence_reader, synthetic, synthetic_crowd
from deeplab_video.evaluation import id_switches, stq, video_metrics
from deeplab_video.inference import model_loading
from deeplab_video.post_processing import video_tracker
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import train_lib

CROSS_ATTENTIONS = ("kmeans", "latent_memory", "softmax")
MANIFEST = "manifest.json"
Setting = matching_space.Setting
LA, NAIVE, NO_MEMORY = matching_space.LOCATION_AWARE, matching_space.NAIVE, matching_space.NO_MEMORY
# Supplementary Table 1: STQ on KITTI-STEP val (Axial-ResNet50-B1), rows in its order.
PAPER_TABLE1 = (
    ("normal cross-attention", "softmax", NO_MEMORY, 68.4),
    ("latent memory cross-attention", "latent_memory", NO_MEMORY, 70.0),
    ("k-means cross-attention (clip-kMaX)", "kmeans", NO_MEMORY, 73.9),
    ("  + LA-MB", "kmeans", LA, 74.7),
)


def table2_settings(
    naive_best_tau: int = 1, la_best_tau: int = 10, large_tau: int = 1000
) -> list[Setting]:
    """Table 2's four settings (`matching_space.table_settings`), LA-MB's stitching on."""
    return [
        dataclasses.replace(s, stitching=True) if s.stitching is None else s
        for s in matching_space.table_settings(naive_best_tau, la_best_tau, large_tau)
    ]


def tracking_settings(
    naive_best_tau: int = 1, la_best_tau: int = 10, large_tau: int = 1000
) -> list[Setting]:
    """Every tracking setting evaluated, each once.

    Video-Stitch alone (Table 1's clip-kMaX rows), LA-MB at its best tau and naive-MB at
    its best tau and at LA-MB's, each with and without Video-Stitch, then Table 2's.
    """
    rows = [Setting(NO_MEMORY, matching_space.BEST, la_best_tau, True)]
    for stitching in (True, False):
        rows += [
            Setting(LA, matching_space.BEST, la_best_tau, stitching),
            Setting(NAIVE, matching_space.BEST, naive_best_tau, stitching),
            Setting(NAIVE, matching_space.BEST, la_best_tau, stitching),
        ]
    table2 = table2_settings(naive_best_tau, la_best_tau, large_tau)
    return list(dict.fromkeys(rows + table2))


def label(setting: Setting) -> str:
    """The setting's name in tables and in the results' keys."""
    if setting.memory == NO_MEMORY:
        return "Video-Stitch only"
    return f"{setting.name}, stitching {'on' if setting.stitching else 'off'}"


def experiment_options(
    base: config_pb2.ExperimentOptions, cross_attention: str, steps: int, data_dir: str
) -> config_pb2.ExperimentOptions:
    """The base experiment with one cross-attention, `steps` steps and data in data_dir.

    Raises:
        ValueError: the result does not validate (e.g. fewer steps than warm-up steps).
    """
    options = config_pb2.ExperimentOptions()
    options.CopyFrom(base)
    options.experiment_name = f"{base.experiment_name}_{cross_attention}"
    options.model_options.transformer_decoder.cross_attention = cross_attention
    solver = options.trainer_options.solver_options
    solver.training_number_of_steps = steps
    solver.warmup_steps = min(solver.warmup_steps, steps // 4)
    for dataset, split in (
        (options.train_dataset_options, "train"),
        (options.eval_dataset_options, "val"),
    ):
        del dataset.file_pattern[:]
        dataset.file_pattern.append(os.path.join(data_dir, f"{split}-*.tfrecord"))
    problems = config.validate(options)
    if problems:
        raise ValueError(f"{cross_attention} with {steps} steps: {problems}")
    return options


def digest(*parts: Any) -> str:
    """A short hex digest of JSON-serialisable parts (protos as text)."""
    text = json.dumps(
        [text_format.MessageToString(p) if hasattr(p, "DESCRIPTOR") else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Manifest:
    """<output_dir>/manifest.json: finished stages with the digest of their inputs."""

    def __init__(self, output_dir: str):
        self._path = os.path.join(output_dir, MANIFEST)
        self.entries: dict[str, dict[str, Any]] = {}
        if os.path.exists(self._path):
            with open(self._path, encoding="utf-8") as f:
                self.entries = json.load(f)

    def get(self, key: str, inputs_digest: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        return entry if entry and entry["digest"] == inputs_digest else None

    def put(self, key: str, inputs_digest: str, **values: Any) -> None:
        self.entries[key] = {"digest": inputs_digest, **values}
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        temporary = self._path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self.entries, f, indent=1)
        os.replace(temporary, self._path)


class Progress:
    """Logs finished stages, the elapsed time and an ETA from the stages timed so far."""

    def __init__(self, stages: Sequence[tuple[str, str]]):
        self._pending = list(stages)  # (stage kind, name)
        self._seconds: dict[str, list[float]] = {}
        self._start = time.monotonic()

    def done(self, kind: str, name: str, seconds: float | None) -> None:
        """Marks a stage finished; seconds None: it was skipped (found in the manifest)."""
        self._pending.remove((kind, name))
        if seconds is not None:
            self._seconds.setdefault(kind, []).append(seconds)
        remaining = [stage for stage, _ in self._pending]
        unknown = sorted({k for k in remaining if k not in self._seconds})
        eta = sum(
            sum(self._seconds[k]) / len(self._seconds[k]) for k in remaining if k not in unknown
        )
        logging.info(
            "[%s %s] %s; %d stages left, elapsed %.0f s, ETA %.0f s%s",
            kind,
            name,
            "skipped (done before)" if seconds is None else f"done in {seconds:.0f} s",
            len(remaining),
            time.monotonic() - self._start,
            eta,
            f" + the {', '.join(unknown)} stages (not timed yet)" if unknown else "",
        )


def train(
    options: config_pb2.ExperimentOptions, output_dir: str, manifest: Manifest, progress: Progress
) -> str:
    """Trains one experiment unless the manifest has it; returns its model_dir."""
    kind = options.model_options.transformer_decoder.cross_attention
    inputs = digest(options)
    model_dir = os.path.join(output_dir, "models", f"{kind}-{inputs}")
    if manifest.get(f"train/{kind}", inputs) and tf.train.latest_checkpoint(model_dir):
        progress.done("train", kind, None)
        return model_dir
    start = time.monotonic()
    train_lib.run_experiment("train", options, model_dir)
    seconds = time.monotonic() - start
    manifest.put(f"train/{kind}", inputs, model_dir=model_dir, seconds=round(seconds, 1))
    progress.done("train", kind, seconds)
    return model_dir


def evaluate_split(
    model: Callable[..., dict[str, Any]],
    options: config_pb2.ExperimentOptions,
    file_pattern: str,
    settings: Sequence[Setting],
    num_sequences: int = -1,
) -> dict[str, dict[str, Any]]:
    """Scores every tracking setting on one split, segmenting each clip once.

    Args:
        model: the network (or a double with its call signature).
        options: the experiment (post-processing and tracking options to vary).
        file_pattern: TFRecord shards of the split.
        settings: the tracking settings.
        num_sequences: sequences to use (-1: all).

    Returns:
        {label(setting): {'STQ', 'AQ', 'IoU', 'IDSW', 'num_tracks', 'matching_space':
        matching_space.SizeSummary as a dict}}.
    """
    descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
    metric_args = (
        descriptor.num_classes,
        list(descriptor.thing_ids),
        descriptor.ignore_label,
        descriptor.label_divisor,
    )
    offset = options.evaluator_options.metrics.stq_offset or (
        video_metrics.DEFAULT_STQ_OFFSET_FACTOR * descriptor.label_divisor
    )
    metrics = {
        s: (stq.STQuality(*metric_args, offset), id_switches.IdSwitches(*metric_args))
        for s in settings
    }
    trackers = matching_space.SettingTrackers(options, settings)
    runner = video_tracker.VideoRunner(model, options, clip_observer=trackers)
    start = time.monotonic()
    for index, (sequence_id, frames, panoptic) in enumerate(
        sequence_reader.read_sequences([file_pattern])
    ):
        if 0 <= num_sequences <= index:
            break
        trackers.start_video()
        for prediction in runner.stream(frames):
            row = prediction.frame_index - trackers.first_frame_index
            truth = panoptic[prediction.frame_index]
            for setting, setting_metrics in metrics.items():
                tracked = trackers.panoptic[setting][row].numpy()
                for metric in setting_metrics:
                    metric.update_state(truth, tracked, sequence_id)
        logging.info(
            "  sequence %s (%d frames) done, %.0f s per sequence so far",
            sequence_id,
            len(frames),
            (time.monotonic() - start) / (index + 1),
        )
    results = {}
    for setting, (stq_metric, switches) in metrics.items():
        quality, counts = stq_metric.result(), switches.result()
        results[label(setting)] = {
            "STQ": float(quality["STQ"]),
            "AQ": float(quality["AQ"]),
            "IoU": float(quality["IoU"]),
            "IDSW": counts["IDSW"],
            "num_tracks": counts["num_tracks"],
            "matching_space": dataclasses.asdict(matching_space.summarize(trackers.sizes[setting])),
        }
    return results


def load_model(
    options: config_pb2.ExperimentOptions, checkpoint: str
) -> Callable[..., dict[str, Any]]:
    """The inference network of the experiment with the checkpoint's weights."""
    return model_loading.load_inference_model(options, checkpoint)


def evaluate(
    options: config_pb2.ExperimentOptions,
    model_dir: str,
    split_patterns: dict[str, str],
    settings: Sequence[Setting],
    num_sequences: int,
    manifest: Manifest,
    progress: Progress,
    reevaluate: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluates one trained model on every split (results from the manifest when there,
    unless `reevaluate`: the manifest knows the inputs of an evaluation, not the code).

    Returns:
        {split: evaluate_split's dict}.
    """
    kind = options.model_options.transformer_decoder.cross_attention
    checkpoint = tf.train.latest_checkpoint(model_dir)
    model = None
    results = {}
    for split, pattern in split_patterns.items():
        marker = os.path.join(os.path.dirname(pattern), synthetic.MARKER_FILE)
        with open(marker, encoding="utf-8") as f:
            data = json.load(f)
        inputs = digest(
            options,
            checkpoint,
            pattern,
            data,
            [dataclasses.asdict(s) for s in settings],
            num_sequences,
        )
        key = f"eval/{kind}/{split}"
        entry = None if reevaluate else manifest.get(key, inputs)
        if entry is not None:
            results[split] = entry["results"]
            progress.done("eval", f"{kind} on {split}", None)
            continue
        start = time.monotonic()
        if model is None:
            model = load_model(options, checkpoint)
        logging.info("Evaluating %s (%s) on %s", kind, checkpoint, split)
        results[split] = evaluate_split(model, options, pattern, settings, num_sequences)
        seconds = time.monotonic() - start
        manifest.put(key, inputs, results=results[split], seconds=round(seconds, 1))
        progress.done("eval", f"{kind} on {split}", seconds)
    return results


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def format_table1(
    results: dict[str, dict[str, dict[str, Any]]], splits: Sequence[str], la_best_tau: int
) -> str:
    """Table 1: STQ per cross-attention (Video-Stitch only) and k-means + LA-MB."""
    rows = {m: label(Setting(m, matching_space.BEST, la_best_tau, True)) for m in (NO_MEMORY, LA)}
    lines = [
        "Table 1: STQ x 100 (paper: KITTI-STEP val, Axial-ResNet50-B1; ours: tiny model)",
        f"{'':40}{'paper':>8}" + "".join(f"{split:>9}" for split in splits),
    ]
    for name, kind, memory, paper in PAPER_TABLE1:
        if kind not in results:
            continue
        cells = []
        for split in splits:
            found = results[kind].get(split, {}).get(rows[memory])
            cells.append(_percent(found["STQ"]) if found else "-")
        lines.append(f"{name:<40}{paper:>8}" + "".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)


def format_tracking(
    results: dict[str, dict[str, dict[str, Any]]], split: str, settings: Sequence[Setting]
) -> str:
    """STQ / AQ x 100 and ID switches of every tracking setting, one column per model."""
    kinds = [k for k in results if split in results[k]]
    header = f"{'tracking on ' + split:<36}" + "".join(f"{k + ' STQ/AQ/IDSW':>28}" for k in kinds)
    lines = [header]
    for setting in settings:
        cells = []
        for kind in kinds:
            r = results[kind][split][label(setting)]
            cells.append(f"{_percent(r['STQ'])} / {_percent(r['AQ'])} / {r['IDSW']}")
        lines.append(f"{label(setting):<36}" + "".join(f"{c:>28}" for c in cells))
    return "\n".join(lines)


def format_table2(split_results: dict[str, dict[str, Any]], table2: Sequence[Setting]) -> str:
    """Table 2 (matching_space.format_table) from one model's results on one split."""
    summaries = {
        s: matching_space.SizeSummary(**split_results[label(s)]["matching_space"]) for s in table2
    }
    return matching_space.format_table(summaries)


def run(
    output_dir: str,
    config_file: str = "configs/synthetic/tiny_near_online.textproto",
    steps: int | None = None,
    cross_attentions: Sequence[str] = CROSS_ATTENTIONS,
    data_dir: str | None = None,
    crowd_dir: str = "datasets/synthetic_crowd",
    num_sequences: int = -1,
    taus: tuple[int, int, int] = (1, 10, 1000),
    reevaluate: bool = False,
) -> dict[str, Any]:
    """Generates the data, trains, evaluates, prints the tables and writes results.json.

    Args:
        output_dir: models, manifest.json and results.json.
        config_file: the experiment to train with each cross-attention.
        steps: training steps (None: the config's).
        cross_attentions: the models to train.
        data_dir: the synthetic train / val dataset (None: where the config points).
        crowd_dir: the crowd split.
        num_sequences: sequences per split to evaluate (-1: all).
        taus: naive-MB's best, LA-MB's best and the large tau (paper: 1, 10, 1000).
        reevaluate: evaluate again even where the manifest holds results (e.g. after a
            change of the tracking code); trainings are still reused.

    Returns:
        The results.json dict.
    """
    start = time.monotonic()
    base = config.load_config(config_file)
    steps = steps or base.trainer_options.solver_options.training_number_of_steps
    data_dir = data_dir or os.path.dirname(base.train_dataset_options.file_pattern[0])
    # Generated with the default parameters where missing; an existing dataset is used as
    # it is (it may have been generated with other parameters).
    for directory, ensure in (
        (data_dir, synthetic.ensure_synthetic_dataset),
        (crowd_dir, synthetic_crowd.ensure_crowd_dataset),
    ):
        if not os.path.exists(os.path.join(directory, synthetic.MARKER_FILE)):
            ensure(directory)
    patterns = {
        "val": os.path.join(data_dir, "val-*.tfrecord"),
        synthetic_crowd.SPLIT: os.path.join(crowd_dir, f"{synthetic_crowd.SPLIT}-*.tfrecord"),
    }
    settings = tracking_settings(*taus)
    manifest = Manifest(output_dir)
    progress = Progress(
        [("train", k) for k in cross_attentions]
        + [("eval", f"{k} on {split}") for k in cross_attentions for split in patterns]
    )
    experiments = {k: experiment_options(base, k, steps, data_dir) for k in cross_attentions}
    model_dirs = {k: train(o, output_dir, manifest, progress) for k, o in experiments.items()}
    results = {
        k: evaluate(
            o, model_dirs[k], patterns, settings, num_sequences, manifest, progress, reevaluate
        )
        for k, o in experiments.items()
    }
    table2_model = "kmeans" if "kmeans" in results else cross_attentions[0]
    texts = [format_table1(results, list(patterns), taus[1])]
    texts += [format_tracking(results, split, settings) for split in patterns]
    texts += [
        f"Table 2 on {split} ({table2_model} model):\n"
        + format_table2(results[table2_model][split], table2_settings(*taus))
        for split in patterns
    ]
    stage_seconds = sum(e.get("seconds", 0.0) for e in manifest.entries.values())
    summary = {
        "device": device_info.describe_device(),
        "config_file": config_file,
        "steps": steps,
        "wall_seconds": round(time.monotonic() - start, 1),
        "stage_seconds": round(stage_seconds, 1),
        "model_dirs": model_dirs,
        "results": results,
        "tables": texts,
    }
    sys.stdout.write("\n\n".join(texts) + "\n")
    sys.stdout.write(
        f"\nWall time {summary['wall_seconds']:.0f} s (trainings and evaluations, "
        f"including earlier runs: {stage_seconds:.0f} s) on {summary['device']}\n"
    )
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def define_flags() -> None:
    """The CLI's flags (only the entry point defines them: importing defines none)."""
    flags.DEFINE_string("output_dir", None, "Models, manifest.json and results.json.")
    flags.DEFINE_string(
        "config_file", "configs/synthetic/tiny_near_online.textproto", "Experiment textproto."
    )
    flags.DEFINE_integer("steps", None, "Training steps per model (default: the config's).")
    flags.DEFINE_list("cross_attentions", list(CROSS_ATTENTIONS), "Models to train.")
    flags.DEFINE_string(
        "data_dir", None, "Synthetic train / val dataset (default: where the config points)."
    )
    flags.DEFINE_string("crowd_dir", "datasets/synthetic_crowd", "The crowd split.")
    flags.DEFINE_integer("num_sequences", -1, "Sequences per split to evaluate (-1: all).")
    flags.DEFINE_bool(
        "reevaluate", False, "Evaluate again what the manifest holds (trainings are reused)."
    )
    flags.DEFINE_integer("naive_best_tau", 1, "naive-MB's best tau (paper: 1).")
    flags.DEFINE_integer("la_best_tau", 10, "LA-MB's best tau (paper: 10).")
    flags.DEFINE_integer("large_tau", 1000, "The tau that barely removes old objects.")
    flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    values = flags.FLAGS
    unknown = sorted(set(values.cross_attentions) - set(CROSS_ATTENTIONS))
    if unknown:
        raise app.UsageError(f"unknown cross-attentions {unknown}; use {CROSS_ATTENTIONS}")
    run(
        values.output_dir,
        values.config_file,
        values.steps,
        values.cross_attentions,
        values.data_dir,
        values.crowd_dir,
        values.num_sequences,
        (values.naive_best_tau, values.la_best_tau, values.large_tau),
        values.reevaluate,
    )


if __name__ == "__main__":
    define_flags()
    entry_point.run(main)
