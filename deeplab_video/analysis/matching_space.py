r"""Supplementary Table 2 of Video-kMaX: the size of the memory's matching space.

At every decoding step the memory buffer scores the N objects of a clip that Video-Stitch
could not place against the M entries of the memory: the similarity matrix S is M x N
(Shin et al., Video-kMaX, WACV 2024, supplementary Sec. B). This tool runs the video runner
over a dataset's evaluation sequences in the paper's four settings

    naive-MB (appearance only, no Video-Stitch: IDOL's buffer)  tau = 1000 and its best tau
    LA-MB    (Video-Stitch, then location-aware memory)          tau = 1000 and its best tau

where tau (memory_buffer.refresh_frames) drops entries unseen for more than tau frames,
and prints the average and maximum M x N next to the paper's figures. Everything else
(thresholds, temperature, momentum, stitching of LA-MB) comes from the experiment config.
Segmentation does not depend on these settings, so every clip is segmented once and
tracked four times (the sizes are those of four separate video-runner passes).

Averaging: the paper averages "the size of the similarity matrix S" per decoding step. A
step with M = 0 or N = 0 forms no matrix (the official LA-MB code skips decoding when the
memory or the set of unstitched objects is empty), so the average and the maximum are taken
over the steps with M x N > 0; the JSON also gives the average over all steps.

    python -m deeplab_video.analysis.matching_space \
        --config_file=configs/synthetic/tiny_near_online.textproto \
        --checkpoint=experiments/synthetic_tiny_near_online --output_json=matching_space.json
    python -m deeplab_video.analysis.matching_space --config_file=... --num_sequences=2
"""

import dataclasses
import functools
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from deeplab_video import config, datasets
from deeplab_video.analysis import model_flags
from deeplab_video.data import sequence_reader
from deeplab_video.inference import model_loading
from deeplab_video.post_processing import panoptic_inference, tracking, video_tracker
from deeplab_video.protos import config_pb2

NAIVE, LOCATION_AWARE, NO_MEMORY = "naive-MB", "LA-MB", "no memory"
LARGE, BEST = "large", "best"
# The paper's Table 2: (memory, column) -> (average, max) of M x N.
PAPER_TABLE = {
    (NAIVE, LARGE): (67.1, 336),
    (NAIVE, BEST): (25.1, 196),
    (LOCATION_AWARE, LARGE): (19.7, 94),
    (LOCATION_AWARE, BEST): (2.8, 24),
}
_KINDS = {NAIVE: "naive", LOCATION_AWARE: "location_aware", NO_MEMORY: "none"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One cell pair of Table 2.

    Attributes:
      memory: NAIVE or LOCATION_AWARE (NO_MEMORY, Video-Stitch alone, is no Table 2 row
        but can be tracked beside them).
      column: LARGE (tau = 1000 in the paper) or BEST (each memory's best tau).
      tau: memory_buffer.refresh_frames of the run.
      stitching: whether Video-Stitch runs before the memory (None: as the config says).
    """

    memory: str
    column: str
    tau: int
    stitching: bool | None

    @property
    def name(self) -> str:
        return f"{self.memory} tau={self.tau}"


@dataclasses.dataclass(frozen=True)
class SizeSummary:
    """Matching-space sizes of one setting over a dataset.

    Attributes:
      average: mean M x N over the steps that form a matrix (M x N > 0); 0 if none does.
      max: largest M x N.
      num_steps: decoding steps (clips) in all.
      num_matching_steps: steps with M x N > 0.
      average_all_steps: mean M x N over every step, empty ones included.
    """

    average: float
    max: int
    num_steps: int
    num_matching_steps: int
    average_all_steps: float


def table_settings(
    naive_best_tau: int = 1,
    la_best_tau: int = 10,
    large_tau: int = 1000,
    naive_stitching: bool = False,
) -> list[Setting]:
    """The four settings of Table 2, in the table's order.

    Args:
      naive_best_tau: naive-MB's best tau (paper: 1).
      la_best_tau: LA-MB's best tau (paper: 10).
      large_tau: the tau that barely removes old objects (paper: 1000).
      naive_stitching: run Video-Stitch before naive-MB too (the paper's naive-MB has none).

    Raises:
      ValueError: a tau below 1.
    """
    if min(naive_best_tau, la_best_tau, large_tau) < 1:
        raise ValueError(
            f"every tau must be at least 1; got naive {naive_best_tau}, LA-MB {la_best_tau}, "
            f"large {large_tau}"
        )
    return [
        Setting(NAIVE, LARGE, large_tau, naive_stitching),
        Setting(NAIVE, BEST, naive_best_tau, naive_stitching),
        Setting(LOCATION_AWARE, LARGE, large_tau, None),
        Setting(LOCATION_AWARE, BEST, la_best_tau, None),
    ]


def setting_options(
    options: config_pb2.ExperimentOptions, setting: Setting
) -> config_pb2.ExperimentOptions:
    """A copy of the experiment with the setting's memory kind, tau and stitching."""
    copy = config_pb2.ExperimentOptions()
    copy.CopyFrom(options)
    copy.evaluator_options.memory_buffer.kind = _KINDS[setting.memory]
    copy.evaluator_options.memory_buffer.refresh_frames = setting.tau
    if setting.stitching is not None:
        copy.evaluator_options.stitching.enabled = setting.stitching
    return copy


def summarize(sizes: Sequence[int]) -> SizeSummary:
    """Average and maximum of per-step M x N sizes (see the module docstring)."""
    sizes = np.asarray(sizes, np.int64)
    matching = sizes[sizes > 0]
    return SizeSummary(
        average=float(matching.mean()) if matching.size else 0.0,
        max=int(sizes.max()) if sizes.size else 0,
        num_steps=int(sizes.size),
        num_matching_steps=int(matching.size),
        average_all_steps=float(sizes.mean()) if sizes.size else 0.0,
    )


def _without_tau(params: tracking.TrackingParams) -> tracking.TrackingParams:
    return params._replace(memory=params.memory._replace(refresh_frames=0))


def _track_with_tau(
    state: tracking.TrackingState,
    clip: panoptic_inference.ClipPanoptic,
    first_frame_index: tf.Tensor,
    tau: tf.Tensor,
    params: tracking.TrackingParams,
) -> tuple[tracking.TrackingState, tf.Tensor, tf.Tensor, tf.Tensor]:
    """tracking.track_clip with refresh_frames given as an int32 scalar tensor."""
    params = params._replace(memory=params.memory._replace(refresh_frames=tau))
    return tracking.track_clip(state, clip, first_frame_index, params)


class SettingTrackers:
    """A VideoRunner clip_observer that tracks every segmented clip once per setting.

    Segmentation does not depend on the memory settings, so the clips of one run are
    tracked in all settings: the network runs once per clip instead of once per setting.
    The steps are those of the video runner (`tracking.track_clip` from the clip's first
    frame, a fresh state per video), so the sizes and ids equal those of a runner per
    setting.

    Attributes:
      sizes: per setting, M x N of every decoding step so far.
      panoptic: per setting, the last clip's int32 [T, height, width] tensor with video
        ids (a frame the runner yields from that clip is row frame_index -
        first_frame_index).
      first_frame_index: video index of the last clip's first frame.
    """

    def __init__(self, options: config_pb2.ExperimentOptions, settings: Sequence[Setting]):
        divisor = datasets.get_descriptor(options.eval_dataset_options.dataset).label_divisor
        self._params = {
            s: tracking.TrackingParams.from_options(
                setting_options(options, s).evaluator_options, divisor
            )
            for s in settings
        }
        # tau enters as a tensor, so settings that differ only in tau share one trace.
        self._steps: dict[tracking.TrackingParams, Callable[..., Any]] = {}
        for params in self._params.values():
            key = _without_tau(params)
            if key not in self._steps:
                self._steps[key] = tf.function(functools.partial(_track_with_tau, params=key))
        self._max_objects = options.evaluator_options.post_processing.max_objects_per_clip
        self._max_tracks = options.evaluator_options.memory_buffer.max_tracks
        self._states: dict[Setting, tracking.TrackingState] = {}
        self.sizes: dict[Setting, list[int]] = {s: [] for s in settings}
        self.panoptic: dict[Setting, tf.Tensor] = {}
        self.first_frame_index = 0

    def start_video(self) -> None:
        """Forgets the previous video's tracks."""
        self._states = {}

    def __call__(
        self,
        clip: panoptic_inference.ClipPanoptic,
        outputs: dict[str, Any],
        first_frame_index: int,
        num_frames: int,
    ) -> None:
        del outputs, num_frames
        self.first_frame_index = first_frame_index
        for setting, params in self._params.items():
            state = self._states.get(setting)
            if state is None:
                state = tracking.initial_state(
                    self._max_objects, self._max_tracks, clip.embeddings.shape[-1]
                )
            state, _, panoptic, size = self._steps[_without_tau(params)](
                state,
                clip,
                tf.constant(first_frame_index, tf.int32),
                tf.constant(params.memory.refresh_frames, tf.int32),
            )
            self._states[setting] = state
            self.sizes[setting].append(int(size))
            self.panoptic[setting] = panoptic


def measure(
    model: Callable[..., dict[str, Any]],
    options: config_pb2.ExperimentOptions,
    sequences: Iterable[np.ndarray],
    settings: Sequence[Setting],
) -> dict[Setting, list[int]]:
    """Runs every setting over every sequence and collects M x N per decoding step.

    Args:
      model: the network (or a test double with its call signature).
      options: the experiment; each setting changes only its memory settings.
      sequences: uint8 [num_frames, height, width, 3] videos.
      settings: the settings to run.

    Returns:
      For each setting, the sizes of all its decoding steps, sequence after sequence.
    """
    trackers = SettingTrackers(options, settings)
    runner = video_tracker.VideoRunner(model, options, clip_observer=trackers)
    for index, frames in enumerate(sequences):
        trackers.start_video()
        for _ in runner.stream(frames):
            pass
        logging.info("Sequence %d (%d frames) done", index, len(frames))
    return trackers.sizes


def format_table(summaries: dict[Setting, SizeSummary]) -> str:
    """Table 2 as text: our average and max of M x N with the paper's in parentheses."""
    by_cell = {(s.memory, s.column): (s, summary) for s, summary in summaries.items()}
    taus = {
        column: ", ".join(s.name for (_, c), (s, _) in by_cell.items() if c == column)
        for column in (LARGE, BEST)
    }
    lines = [
        "Matching space M x N per decoding step (paper's Table 2 in parentheses)",
        f"  large tau: {taus[LARGE]}   best tau: {taus[BEST]}",
        f"{'memory':<10}{'large: average':>18}{'max':>14}{'best: average':>18}{'max':>14}",
    ]
    for memory in (NAIVE, LOCATION_AWARE):
        cells = []
        for column in (LARGE, BEST):
            paper_average, paper_max = PAPER_TABLE[(memory, column)]
            if (memory, column) in by_cell:
                summary = by_cell[(memory, column)][1]
                cells += [
                    f"{summary.average:.1f} ({paper_average})",
                    f"{summary.max} ({paper_max})",
                ]
            else:
                cells += [f"- ({paper_average})", f"- ({paper_max})"]
        lines.append(f"{memory:<10}{cells[0]:>18}{cells[1]:>14}{cells[2]:>18}{cells[3]:>14}")
    return "\n".join(lines)


def to_json(sizes: dict[Setting, list[int]], **metadata: Any) -> dict[str, Any]:
    """Every setting's summary and per-step sizes, with the paper's figures and metadata."""
    settings = []
    for setting, values in sizes.items():
        paper_average, paper_max = PAPER_TABLE[(setting.memory, setting.column)]
        settings.append(
            {
                **dataclasses.asdict(setting),
                **dataclasses.asdict(summarize(values)),
                "paper_average": paper_average,
                "paper_max": paper_max,
                "sizes": [int(v) for v in values],
            }
        )
    return {**metadata, "settings": settings}


def run(
    config_file: str,
    checkpoint: str | None,
    output_json: str,
    num_sequences: int | None = None,
    settings: Sequence[Setting] | None = None,
    model: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Measures Table 2 on a config's evaluation sequences, prints it and writes the JSON.

    Args:
      config_file: experiment textproto (network, eval dataset, tracking options).
      checkpoint: checkpoint prefix or model_dir (None: freshly initialised weights).
      output_json: where the numbers go.
      num_sequences: sequences to use (None: evaluator_options.num_eval_sequences; -1: all).
      settings: the settings to run (default `table_settings()`).
      model: a network to use instead of building and restoring one.

    Returns:
      The JSON dict.
    """
    options = config.load_config(config_file)
    if num_sequences is None:
        num_sequences = options.evaluator_options.num_eval_sequences
    settings = list(settings or table_settings())
    if model is None:
        model = model_loading.load_inference_model(options, checkpoint, config_file)
    sequences = sequence_reader.read_sequences(options.eval_dataset_options.file_pattern)
    sequence_ids = []

    def videos() -> Iterator[np.ndarray]:
        for sequence_id, frames, _ in itertools.islice(
            sequences, num_sequences if num_sequences >= 0 else None
        ):
            sequence_ids.append(sequence_id)
            yield frames

    sizes = measure(model, options, videos(), settings)
    summaries = {s: summarize(v) for s, v in sizes.items()}
    sys.stdout.write(format_table(summaries) + "\n")
    results = to_json(
        sizes, config_file=config_file, checkpoint=checkpoint, sequence_ids=sequence_ids
    )
    with open(output_json, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)
    logging.info("Wrote %s", output_json)
    return results


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the CLI's flags (only the entry point calls this, so importing the module
    as a library never clashes with another CLI's flags)."""
    model_flags.define_model_flags(flag_values)
    flags.DEFINE_integer(
        "naive_best_tau", 1, "naive-MB's best tau (paper: 1).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "la_best_tau", 10, "LA-MB's best tau (paper: 10).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "large_tau",
        1000,
        "The tau that barely removes old objects (paper: 1000).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "naive_stitching",
        False,
        "Run Video-Stitch before naive-MB too (the paper's naive-MB has none).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output_json", "matching_space.json", "Where to write the JSON.", flag_values=flag_values
    )


def run_from_flags(
    flag_values: flags.FlagValues = flags.FLAGS,
    model: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`run` with the settings of parsed flags (see `define_flags`).

    Raises:
      app.UsageError: a tau below 1.
    """
    try:
        settings = table_settings(
            flag_values.naive_best_tau,
            flag_values.la_best_tau,
            flag_values.large_tau,
            flag_values.naive_stitching,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    return run(
        flag_values.config_file,
        flag_values.checkpoint,
        flag_values.output_json,
        flag_values.num_sequences,
        settings,
        model,
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run_from_flags()


if __name__ == "__main__":
    define_flags()
    app.run(main)
