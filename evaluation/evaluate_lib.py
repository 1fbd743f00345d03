"""Scores predicted panoptic PNG folders against ground truth, and reports metric results.

`evaluate_folders` runs STQ, VPQ and frame PQ over two folders of `<sequence>/<frame>.png`
(see `label_io` for the encodings) through a `video_metrics.VideoMetrics`, whose result
dict the trainer's evaluator shares; `format_report` renders it as plain-text tables and
`results_to_json` makes any result JSON-safe. The `deeplab-video-eval` CLI (evaluate.py)
runs these with its flags.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from deeplab_video.evaluation import label_io, video_metrics


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """The dataset constants evaluation needs (a DatasetDescriptor also provides them)."""

    num_classes: int
    thing_ids: tuple[int, ...]
    ignore_label: int
    label_divisor: int
    class_names: tuple[str, ...] = ()


def evaluate_folders(
    gt_dir: str,
    pred_dir: str,
    dataset: Any,
    label_format: str,
    window_sizes: Sequence[int] = (1, 2, 3, 4),
    stq_offset: int = 0,
) -> dict[str, Any]:
    """Evaluates every ground-truth frame under `gt_dir` against `pred_dir`.

    Args:
        gt_dir: folder of `<sequence>/<frame>.png` ground truth.
        pred_dir: folder of predictions with the same names.
        dataset: an object with num_classes, thing_ids, ignore_label, label_divisor and
            optionally class_names (e.g. a `LabelSpace` or a `DatasetDescriptor`).
        label_format: 'kitti_step' or 'vipseg' (see `label_io`).
        window_sizes: VPQ window sizes.
        stq_offset: STQ id-pair offset; 0 picks 2**16 * label_divisor.

    Returns:
        A JSON-ready dict: 'STQ', 'AQ', 'IoU', the VPQ keys of
        `VideoPanopticQuality.result`, frame 'PQ' / 'SQ' / 'RQ' (+ '_thing', '_stuff'),
        'num_sequences', 'num_frames', 'per_sequence' and 'per_class' lists.

    Raises:
        label_io.LabelFileError: a frame is missing, undecodable, of another size than its
            ground truth, or holds labels the dataset does not have.
    """
    metrics = video_metrics.VideoMetrics(dataset, window_sizes, stq_offset)
    for sequence, gt_path, pred_path in label_io.paired_frames(gt_dir, pred_dir):
        gt = label_io.read_label_map(gt_path, label_format, dataset)
        pred = label_io.read_label_map(pred_path, label_format, dataset)
        if gt.shape != pred.shape:
            raise label_io.LabelFileError(
                f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground "
                f"truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})"
            )
        metrics.update(gt, pred, sequence)
    logging.info("Evaluated %d frames of %s against %s", metrics.num_frames, pred_dir, gt_dir)
    return metrics.results()


def format_report(results: dict[str, Any]) -> str:
    """Renders `evaluate_folders` results as plain-text tables (numbers in percent)."""
    prefix = "VPQ_window"
    windows = sorted(int(k.removeprefix(prefix)) for k in results if k.startswith(prefix))
    lines = [
        f"{results['num_sequences']} sequences, {results['num_frames']} frames",
        "",
        f"{'':10}{'all':>8}{'thing':>8}{'stuff':>8}",
        f"{'STQ':10}{_percent(results['STQ'])}",
        f"{'AQ':10}{_percent(results['AQ'])}",
        f"{'SQ (IoU)':10}{_percent(results['IoU'])}",
        f"{'VPQ':10}{_row(results, 'VPQ{}')}",
    ]
    lines += [f"{f'VPQ w={n}':10}{_row(results, 'VPQ{}_window' + str(n))}" for n in windows]
    lines += [f"{'frame PQ':10}{_row(results, 'PQ{}')}", "", f"{'sequence':24}{'frames':>7}"]
    lines[-1] += "".join(f"{k:>8}" for k in ("STQ", "AQ", "IoU"))
    for seq in results["per_sequence"]:
        lines.append(
            f"{seq['sequence'][:24]:24}{seq['frames']:7d}"
            + "".join(_percent(seq[k]) for k in ("STQ", "AQ", "IoU"))
        )
    lines += ["", f"{'class':28}{'IoU':>8}{'PQ':>8}" + "".join(f"{f'VPQ{n}':>8}" for n in windows)]
    for entry in results["per_class"]:
        name = f"{entry['class_id']:3d} {entry['name'][:20]}{' *' if entry['is_thing'] else ''}"
        keys = ["IoU", "PQ"] + [f"VPQ_window{n}" for n in windows]
        lines.append(f"{name:28}" + "".join(_percent(entry[k]) for k in keys))
    lines.append("(* thing class; - no pixel / segment of the class in either folder)")
    return "\n".join(lines)


def _row(results: dict[str, Any], pattern: str) -> str:
    return "".join(_percent(results[pattern.format(s)]) for s in ("", "_thing", "_stuff"))


def _percent(value: float | None) -> str:
    """An 8-wide percentage, or '-' for a missing (None or NaN) value."""
    if value is None or not np.isfinite(value):
        return f"{'-':>8}"
    return f"{100 * value:8.2f}"


def results_to_json(value: Any) -> Any:
    """JSON-ready copy: numpy scalars become Python numbers, NaN becomes null."""
    if isinstance(value, dict):
        return {str(k): results_to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [results_to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
