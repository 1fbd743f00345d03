r"""Supplementary Fig. 1 of Video-kMaX: the mean centre of the segments each query predicts.

The paper (Shin et al., Video-kMaX, WACV 2024, supplementary Sec. E) computes, for every
object query, the mean location of the centres of all the segments (stuff and things) it
predicts over a validation set, and shows them as a scatter plot on the image plane: the
queries learn a structural prior, each one answering for objects around one place.

A segment here is one query's region in one frame of a clip's final panoptic map (every
real frame of every clip counts, so the frame two near-online clips share counts once per
clip; frames that only repeat a video's last frame do not). Which query made a pixel:

- thing pixels: the query of their object row (ClipPanoptic.query_indices), exact;
- stuff pixels: stuff segments of one class are merged in the panoptic map, so a pixel of
  stuff class c goes to the query of class c with the highest mask logit at the nearest
  stride-4 cell (the only one when, as usual, a single query predicts c).

Centres are in normalised image coordinates: x = (column + 0.5) / width, y likewise.

    python -m deeplab_video.analysis.query_centres \
        --config_file=configs/synthetic/tiny_near_online.textproto \
        --checkpoint=experiments/synthetic_tiny_near_online --output_dir=/tmp/query_centres
writes query_centres.png and query_centres.json into --output_dir.
"""

import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from absl import app, flags, logging
from matplotlib import figure
from matplotlib.backends import backend_agg

from deeplab_video import config, datasets
from deeplab_video.analysis import model_flags
from deeplab_video.data import sequence_reader
from deeplab_video.inference import model_loading
from deeplab_video.post_processing import panoptic_inference, video_tracker
from deeplab_video.protos import config_pb2

PLOT_FILE = "query_centres.png"
JSON_FILE = "query_centres.json"


def _nearest_cells(size: int, padded: int, cells: int) -> np.ndarray:
    """Stride-4 cell nearest to each pixel row (or column), with aligned corners."""
    scale = (cells - 1) / max(padded - 1, 1)
    return np.floor(np.arange(size) * scale + 0.5).astype(np.int64)


def segment_query_map(
    panoptic: np.ndarray,
    query_indices: np.ndarray,
    mask_logits: np.ndarray,
    class_logits: np.ndarray,
    descriptor: datasets.DatasetDescriptor,
) -> np.ndarray:
    """The query that produced each pixel of a clip's panoptic map.

    Args:
      panoptic: int32 [num_frames, height, width], clip-local panoptic ids (ClipPanoptic).
      query_indices: int32 [K], the query of each thing object row (-1 on padding).
      mask_logits: float32 [num_frames, h, w, num_queries] at stride 4 of the padded
        input (`video_tracker.padded_size(height, width)`).
      class_logits: float32 [num_queries, num_classes + 1], void last.
      descriptor: the dataset (thing and stuff ids, label divisor).

    Returns:
      int32 [num_frames, height, width]: the query of each pixel, -1 on void pixels.
    """
    height, width = panoptic.shape[1:]
    semantic = panoptic // descriptor.label_divisor
    instance = panoptic % descriptor.label_divisor
    query_map = np.full(panoptic.shape, -1, np.int32)
    row = instance - 1
    is_thing = np.isin(semantic, descriptor.thing_ids) & (row >= 0) & (row < len(query_indices))
    query_map[is_thing] = query_indices[row[is_thing]]

    classes = np.argmax(class_logits[:, :-1], axis=-1)
    padded_height, padded_width = video_tracker.padded_size(height, width)
    cell_rows = _nearest_cells(height, padded_height, mask_logits.shape[1])
    cell_cols = _nearest_cells(width, padded_width, mask_logits.shape[2])
    is_stuff = np.isin(semantic, descriptor.stuff_ids)
    for stuff_class in np.unique(semantic[is_stuff]):
        candidates = np.flatnonzero(classes == stuff_class)
        if candidates.size == 0:
            continue
        best = candidates[np.argmax(mask_logits[..., candidates], axis=-1)]
        t, y, x = np.nonzero(is_stuff & (semantic == stuff_class))
        query_map[t, y, x] = best[t, cell_rows[y], cell_cols[x]]
    return query_map


def frame_centres(query_map: np.ndarray, num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre of every (frame, query) segment.

    Args:
      query_map: int [num_frames, height, width], query per pixel, -1 on void.
      num_queries: N.

    Returns:
      centres: float64 [num_frames, N, 2], normalised (x, y) of each segment (0 where absent).
      present: bool [num_frames, N], whether the query has pixels in the frame.
    """
    num_frames, height, width = query_map.shape
    keys = (np.arange(num_frames)[:, None, None] * (num_queries + 1) + query_map + 1).ravel()
    length = num_frames * (num_queries + 1)
    ys, xs = np.mgrid[0:height, 0:width]
    xs = np.broadcast_to((xs + 0.5) / width, query_map.shape).ravel()
    ys = np.broadcast_to((ys + 0.5) / height, query_map.shape).ravel()
    counts = np.bincount(keys, minlength=length).reshape(num_frames, -1)[:, 1:]
    sums = np.stack(
        [
            np.bincount(keys, weights=xs, minlength=length).reshape(num_frames, -1)[:, 1:],
            np.bincount(keys, weights=ys, minlength=length).reshape(num_frames, -1)[:, 1:],
        ],
        axis=-1,
    )
    present = counts > 0
    return np.where(present[..., None], sums / np.maximum(counts, 1)[..., None], 0.0), present


class QueryCentres:
    """Accumulates the mean segment centre per query; an instance is a VideoRunner
    clip_observer.

    Args:
      descriptor: the dataset the clips come from.
    """

    def __init__(self, descriptor: datasets.DatasetDescriptor):
        self._descriptor = descriptor
        self._sums: np.ndarray | None = None  # float64 [N, 2]
        self._counts: np.ndarray | None = None  # int64 [N]
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the last frame

    def __call__(
        self,
        clip: panoptic_inference.ClipPanoptic,
        outputs: dict[str, Any],
        first_frame_index: int,
        num_frames: int,
    ) -> None:
        """Adds the real frames of one segmented clip (the clip_observer signature)."""
        del first_frame_index
        query_map = segment_query_map(
            np.asarray(clip.panoptic)[:num_frames],
            np.asarray(clip.query_indices),
            np.asarray(outputs["mask_logits"])[0, :num_frames],
            np.asarray(outputs["class_logits"])[0],
            self._descriptor,
        )
        self.add(query_map, int(outputs["mask_logits"].shape[-1]))

    def add(self, query_map: np.ndarray, num_queries: int) -> None:
        """Adds every (frame, query) segment of an int [num_frames, height, width] query map.

        Raises:
          ValueError: num_queries differs from earlier calls.
        """
        if self._counts is None:
            self._sums = np.zeros([num_queries, 2])
            self._counts = np.zeros([num_queries], np.int64)
        elif num_queries != len(self._counts):
            raise ValueError(f"got {num_queries} queries after {len(self._counts)} before")
        centres, present = frame_centres(query_map, num_queries)
        self._sums += centres.sum(axis=0)
        self._counts += present.sum(axis=0)
        self.frame_size = tuple(query_map.shape[1:])

    @property
    def counts(self) -> np.ndarray:
        """int64 [N]: segments seen per query (empty before the first clip)."""
        return np.zeros([0], np.int64) if self._counts is None else self._counts.copy()

    @property
    def centres(self) -> np.ndarray:
        """float64 [N, 2]: mean normalised (x, y) per query; NaN for queries without segments."""
        if self._counts is None:
            return np.zeros([0, 2])
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._sums / self._counts[:, None]

    def to_json(self) -> dict[str, Any]:
        """Per-query centres and segment counts (x, y null for unused queries)."""
        queries = []
        for query, ((x, y), count) in enumerate(zip(self.centres, self.counts, strict=True)):
            used = count > 0
            queries.append(
                {
                    "query": query,
                    "x": float(x) if used else None,
                    "y": float(y) if used else None,
                    "num_segments": int(count),
                }
            )
        return {"num_queries": len(queries), "frame_size": self.frame_size, "queries": queries}

    def plot(self, path: str, title: str = "Mean segment centre per query") -> None:
        """Writes the Fig. 1 scatter plot (image plane, y down) as a PNG."""
        fig = figure.Figure(figsize=(8, 6), dpi=100)
        backend_agg.FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        used = self.counts > 0
        centres = self.centres[used]
        queries = np.flatnonzero(used)
        points = ax.scatter(
            centres[:, 0],
            centres[:, 1],
            c=queries,
            cmap="viridis",
            vmin=0,
            vmax=max(len(used) - 1, 1),
            s=30,
        )
        for query, (x, y) in zip(queries, centres, strict=True):
            ax.annotate(str(query), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(1.0, 0.0)
        if self.frame_size is not None:
            ax.set_aspect(self.frame_size[0] / self.frame_size[1])
        ax.set_xlabel("x (fraction of width)")
        ax.set_ylabel("y (fraction of height)")
        ax.set_title(f"{title} ({int(used.sum())} of {len(used)} queries used)")
        fig.colorbar(points, ax=ax, label="query")
        fig.savefig(path)


def compute(
    model: Callable[..., dict[str, Any]],
    options: config_pb2.ExperimentOptions,
    sequences: Iterable[np.ndarray],
) -> QueryCentres:
    """Runs the video runner over uint8 [num_frames, height, width, 3] videos and returns
    the accumulated centres."""
    centres = QueryCentres(datasets.get_descriptor(options.eval_dataset_options.dataset))
    runner = video_tracker.VideoRunner(model, options, clip_observer=centres)
    for index, frames in enumerate(sequences):
        for _ in runner.stream(frames):
            pass
        logging.info("Sequence %d (%d frames) done", index, len(frames))
    return centres


def run(
    config_file: str,
    checkpoint: str | None,
    output_dir: str,
    num_sequences: int | None = None,
    model: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Computes Fig. 1 on a config's evaluation sequences; writes the PNG and the JSON.

    Args:
      config_file: experiment textproto.
      checkpoint: checkpoint prefix or model_dir (None: freshly initialised weights).
      output_dir: where query_centres.png and query_centres.json go (created if missing).
      num_sequences: sequences to use (None: evaluator_options.num_eval_sequences; -1: all).
      model: a network to use instead of building and restoring one.

    Returns:
      The JSON dict.
    """
    options = config.load_config(config_file)
    if num_sequences is None:
        num_sequences = options.evaluator_options.num_eval_sequences
    if model is None:
        model = model_loading.load_inference_model(options, checkpoint, config_file)
    sequences = itertools.islice(
        sequence_reader.read_sequences(options.eval_dataset_options.file_pattern),
        num_sequences if num_sequences >= 0 else None,
    )
    centres = compute(model, options, (frames for _, frames, _ in sequences))
    os.makedirs(output_dir, exist_ok=True)
    centres.plot(os.path.join(output_dir, PLOT_FILE), f"{options.experiment_name}: query centres")
    results = {"config_file": config_file, "checkpoint": checkpoint, **centres.to_json()}
    with open(os.path.join(output_dir, JSON_FILE), "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)
    logging.info("Wrote %s and %s to %s", PLOT_FILE, JSON_FILE, output_dir)
    return results


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the CLI's flags (only the entry point calls this, so importing the module
    as a library never clashes with another CLI's flags)."""
    model_flags.define_model_flags(flag_values)
    flags.DEFINE_string(
        "output_dir", "query_centres", "Where the PNG and JSON go.", flag_values=flag_values
    )


def run_from_flags(
    flag_values: flags.FlagValues = flags.FLAGS,
    model: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`run` with the settings of parsed flags (see `define_flags`)."""
    return run(
        flag_values.config_file,
        flag_values.checkpoint,
        flag_values.output_dir,
        flag_values.num_sequences,
        model,
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run_from_flags()


if __name__ == "__main__":
    define_flags()
    app.run(main)
