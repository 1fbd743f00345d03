"""Host-side counting shared by the STQ, VPQ and PQ metrics.

Every metric here starts from the same object: the sparse joint histogram of one frame,
i.e. the (ground-truth label, predicted label) pairs that occur in it and how many pixels
each pair covers. Everything after it works on a few hundred pairs instead of the full
frame, so this count is where the time goes.

Label maps are piecewise constant: along a row, the (ground truth, prediction) pair stays
the same for long runs of pixels. The count therefore takes one vectorised pass that finds
where the pair changes in the flattened frame, and then sorts only the runs (one int64 key
`gt * bound + pred` per run, weighted by its length), a few thousand instead of the
frame's hundreds of thousands of pixels. Maps that change at most pixels (noise) are
counted pixel by pixel with `np.unique` instead. Both give the same counts.

Inputs may be numpy arrays or eager TensorFlow tensors: both are converted to numpy here,
at the host boundary, and all accumulation happens on the host.
"""

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

# Largest pair key: keys are `gt * bound + pred` in int64.
_MAX_KEY = np.iinfo(np.int64).max
# A frame whose label pair changes at more than this fraction of its pixels is counted
# pixel by pixel: sorting runs only pays off when runs are longer than a few pixels.
_MAX_RUN_FRACTION = 0.25


def as_label_map(labels: Any, name: str) -> np.ndarray:
    """Converts a panoptic label map to an integer numpy array on the host.

    Args:
        labels: int panoptic labels (semantic * label_divisor + instance) of any shape, as a
            numpy array, an eager `tf.Tensor` or a nested list.
        name: what the labels are (used in error messages).

    Returns:
        integer numpy array with the shape and integer dtype of `labels` (their range is
        checked by `label_pairs`).

    Raises:
        TypeError: the labels are not integers.
    """
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer panoptic labels, got dtype {array.dtype}")
    return array


def sequence_key(sequence_id: Any) -> Hashable:
    """Turns a sequence id (int, str, bytes, numpy scalar or scalar tensor) into a dict key."""
    if hasattr(sequence_id, "numpy"):
        sequence_id = sequence_id.numpy()
    if isinstance(sequence_id, np.ndarray | np.generic):
        sequence_id = sequence_id.item()
    if isinstance(sequence_id, bytes):
        sequence_id = sequence_id.decode("utf-8")
    return sequence_id


def label_bound(num_classes: int, ignore_label: int, label_divisor: int) -> int:
    """One more than the largest valid panoptic label (classes and the ignore label)."""
    return (max(num_classes - 1, ignore_label) + 1) * label_divisor


def unknown_classes(class_ids: np.ndarray, num_classes: int, ignore_label: int) -> list[int]:
    """Returns the sorted class ids that are neither a dataset class nor the ignore label.

    Args:
        class_ids: int semantic class ids of any shape (usually the few distinct ones).
        num_classes: number of classes; valid ids are 0..num_classes-1.
        ignore_label: the void class id, also valid.
    """
    ids = np.unique(np.asarray(class_ids))
    bad = ids[((ids < 0) | (ids >= num_classes)) & (ids != ignore_label)]
    return bad.tolist()


def check_classes(semantic: np.ndarray, num_classes: int, ignore_label: int, name: str) -> None:
    """Raises ValueError naming the classes of `semantic` that `unknown_classes` rejects."""
    bad = unknown_classes(semantic, num_classes, ignore_label)
    if bad:
        raise ValueError(
            f"{name} holds semantic classes {bad} outside 0..{num_classes - 1} "
            f"that are not the ignore label {ignore_label}"
        )


def label_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, bound: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts the pixels of every (ground-truth label, predicted label) pair of a frame.

    Args:
        y_true: int [height, width] ground-truth panoptic labels (any shape works).
        y_pred: int predicted panoptic labels, same shape as `y_true`.
        bound: labels must lie in [0, bound).

    Returns:
        (gt, pred, count): int64 [num_pairs] each, one entry per distinct pair, sorted by
        (gt, pred).

    Raises:
        ValueError: the shapes differ, or a label is negative or >= `bound`.
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"ground truth and prediction differ in shape: {y_true.shape} vs {y_pred.shape}"
        )
    if bound * bound > _MAX_KEY:
        raise ValueError(f"label bound {bound} is too large to encode label pairs in int64")
    gt, pred = y_true.ravel(), y_pred.ravel()
    starts = _run_starts(gt, pred)
    by_pixel = starts.size > _MAX_RUN_FRACTION * gt.size
    if not by_pixel:
        # Every label of the frame starts some run, so the runs' labels are checked below.
        gt, pred = gt[starts], pred[starts]
    _check_range(gt, bound, "ground truth")
    _check_range(pred, bound, "prediction")
    keys = _pair_keys(gt, pred, bound)
    if by_pixel:
        keys, counts = np.unique(keys, return_counts=True)
    else:
        keys, counts = sum_by_key(keys, np.diff(starts, append=y_true.size))
    return keys // bound, keys % bound, counts.astype(np.int64, copy=False)


def _check_range(labels: np.ndarray, bound: int, name: str) -> None:
    """Raises ValueError unless every label of `labels` (int [n]) lies in [0, bound)."""
    if not labels.size:
        return
    if labels.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {labels.min()})")
    if labels.max() >= bound:
        raise ValueError(
            f"{name} holds label {labels.max()}, beyond the largest valid label "
            f"{bound - 1} (semantic class too large for num_classes / ignore_label)"
        )


def _run_starts(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """int64 [num_runs] indices where the (gt, pred) pair of flat maps [n] changes (0 first)."""
    change = np.empty(gt.size, bool)
    change[:1] = True
    np.not_equal(gt[1:], gt[:-1], out=change[1:])
    change[1:] |= pred[1:] != pred[:-1]
    return np.flatnonzero(change)


def _pair_keys(gt: np.ndarray, pred: np.ndarray, bound: int) -> np.ndarray:
    """int64 [n] keys `gt * bound + pred` of int label arrays [n] with labels < bound."""
    keys = gt.astype(np.int64)
    keys *= bound
    keys += pred.astype(np.int64, copy=False)
    return keys


def sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adds up the counts of equal keys.

    Args:
        keys: int64 [n] keys, repeats allowed.
        counts: int64 or float64 [n] count of each entry.

    Returns:
        (unique_keys, sums): sorted int64 [m] keys and the summed counts [m], of the dtype
        of `counts`.
    """
    counts = np.asarray(counts)
    if keys.size == 0:
        return keys.astype(np.int64), counts
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.empty(keys.size, bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return keys[starts], np.add.reduceat(counts[order], starts)


def concat_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], bound: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums several sparse joint histograms (e.g. the frames of a window) into one.

    Args:
        pairs: (gt, pred, count) triples as returned by `label_pairs`.
        bound: labels lie in [0, bound).

    Returns:
        (gt, pred, count): int64 [num_pairs] each, one entry per distinct pair.
    """
    gt = np.concatenate([p[0] for p in pairs])
    pred = np.concatenate([p[1] for p in pairs])
    counts = np.concatenate([p[2] for p in pairs])
    keys, sums = sum_by_key(gt * bound + pred, counts)
    return keys // bound, keys % bound, sums
