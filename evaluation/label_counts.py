"""Host-side counting shared by the STQ, VPQ and PQ metrics.

Every metric here starts from the same object: the sparse joint histogram of one frame,
i.e. the (ground-truth label, predicted label) pairs that occur in it and how many pixels
each pair covers. It takes one pass over the pixels (pairs are encoded as one int64 key,
`gt * bound + pred`, and counted with `np.unique`); everything after it works on a few
hundred pairs instead of the full frame.

Inputs may be numpy arrays or eager TensorFlow tensors: both are converted to numpy here,
at the host boundary, and all accumulation happens on the host.
"""

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

# Largest key `np.unique` may see: keys are `gt * bound + pred` in int64.
_MAX_KEY = np.iinfo(np.int64).max


def as_label_map(labels: Any, name: str) -> np.ndarray:
    """Converts a panoptic label map to an int64 numpy array on the host.

    Args:
        labels: int panoptic labels (semantic * label_divisor + instance) of any shape, as a
            numpy array, an eager `tf.Tensor` or a nested list.
        name: what the labels are (used in error messages).

    Returns:
        integer numpy array with the shape and integer dtype of `labels`.

    Raises:
        TypeError: the labels are not integers.
        ValueError: a label is negative.
    """
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer panoptic labels, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {array.min()})")
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
        (gt, pred, count): int64 [num_pairs] each, one entry per distinct pair.

    Raises:
        ValueError: the shapes differ, or a label is >= `bound`.
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"ground truth and prediction differ in shape: {y_true.shape} vs {y_pred.shape}"
        )
    if bound * bound > _MAX_KEY:
        raise ValueError(f"label bound {bound} is too large to encode label pairs in int64")
    for name, labels in (("ground truth", y_true), ("prediction", y_pred)):
        if labels.size and labels.max() >= bound:
            raise ValueError(
                f"{name} holds label {labels.max()}, beyond the largest valid label "
                f"{bound - 1} (semantic class too large for num_classes / ignore_label)"
            )
    keys = y_true.astype(np.int64).ravel()
    keys *= bound
    keys += y_pred.ravel()
    keys, counts = np.unique(keys, return_counts=True)
    return keys // bound, keys % bound, counts.astype(np.int64)


def sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adds up the counts of equal keys.

    Args:
        keys: int64 [n] keys, repeats allowed.
        counts: int64 or float64 [n] count of each entry.

    Returns:
        (unique_keys, sums): sorted int64 [m] keys and the summed counts [m] (int64 when
        `counts` is integer, float64 otherwise).
    """
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=counts, minlength=unique_keys.size)
    if np.issubdtype(np.asarray(counts).dtype, np.integer):
        sums = np.rint(sums).astype(np.int64)
    return unique_keys, sums


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
