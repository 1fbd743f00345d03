"""Panoptic quality (PQ) of single frames, with COCO panopticapi's accounting.

    A. Kirillov et al., "Panoptic Segmentation", CVPR 2019.

A ground-truth segment and a predicted segment of the same class match when their IoU
exceeds 0.5; the union leaves out the predicted pixels that fall on void. Per class,
PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP, RQ = TP / (TP + FP/2
+ FN/2), and the summary averages over the classes with TP + FP + FN > 0 (all, things,
stuff), as `pq_compute` of cocodataset/panopticapi does. In our label encoding:

- void is every pixel whose semantic class is `ignore_label`, in ground truth or
  prediction (COCO's segment id 0);
- crowd is a ground-truth pixel of a thing class with instance 0 (COCO's `iscrowd`): it
  never matches and is no false negative; an unmatched prediction is no false positive
  when more than half of it lies on void or on the crowd region of its own class;
- a predicted thing segment with instance 0 is an ordinary segment.

The same accounting scores the tubes of video panoptic quality (`vpq`), which feeds it
the summed pair counts of several frames; `add_pairs` is that entry point.

When a group (things or stuff) has no class to average over, its PQ, SQ and RQ are 0.0
(panopticapi divides by zero there).
"""

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deeplab_video.evaluation import label_counts

# Part of the definition of PQ (not tunable): a pair matches when its IoU exceeds
# _MATCH_IOU; an unmatched prediction is no false positive when more than
# _IGNORED_FRACTION of it lies on void or crowd.
_MATCH_IOU = 0.5
_IGNORED_FRACTION = 0.5


@dataclasses.dataclass
class ClassStats:
    """Per-class sums of panoptic matching.

    Attributes:
        iou: float64 [num_classes] sum of the IoU of matched pairs.
        tp: int64 [num_classes] matched pairs.
        fp: int64 [num_classes] unmatched predicted segments.
        fn: int64 [num_classes] unmatched ground-truth segments.
    """

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> "ClassStats":
        return cls(
            np.zeros(num_classes, np.float64),
            np.zeros(num_classes, np.int64),
            np.zeros(num_classes, np.int64),
            np.zeros(num_classes, np.int64),
        )

    def __iadd__(self, other: "ClassStats") -> "ClassStats":
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in dataclasses.asdict(self).items()}


def per_class(stats: ClassStats) -> dict[str, np.ndarray]:
    """Per-class quality.

    Returns:
        A dict of [num_classes] arrays: 'PQ', 'SQ', 'RQ' (float64, 0 for classes without
        any segment), 'IoU' (sum over matches), 'TP', 'FP', 'FN'.
    """
    denominator = stats.tp + 0.5 * stats.fp + 0.5 * stats.fn
    safe = np.maximum(denominator, 1e-15)
    return {
        "PQ": np.where(denominator > 0, stats.iou / safe, 0.0),
        "SQ": np.where(stats.tp > 0, stats.iou / np.maximum(stats.tp, 1), 0.0),
        "RQ": np.where(denominator > 0, stats.tp / safe, 0.0),
        "IoU": stats.iou.copy(),
        "TP": stats.tp.copy(),
        "FP": stats.fp.copy(),
        "FN": stats.fn.copy(),
    }


def summarize(stats: ClassStats, is_thing: np.ndarray) -> dict[str, float]:
    """Averages per-class quality over the classes that have a segment.

    Args:
        stats: accumulated per-class sums.
        is_thing: bool [num_classes], True for thing classes.

    Returns:
        'PQ', 'SQ', 'RQ' and their '_thing' / '_stuff' variants (floats in [0, 1]) and
        'N', 'N_thing', 'N_stuff', the number of classes averaged.
    """
    quality = per_class(stats)
    present = (stats.tp + stats.fp + stats.fn) > 0
    summary = {}
    for suffix, group in (
        ("", np.ones_like(is_thing)),
        ("_thing", is_thing),
        ("_stuff", ~is_thing),
    ):
        selected = present & group
        count = int(np.count_nonzero(selected))
        for name in ("PQ", "SQ", "RQ"):
            summary[name + suffix] = float(np.mean(quality[name][selected])) if count else 0.0
        summary["N" + suffix] = count
    return summary


class PanopticQuality:
    """Streaming image panoptic quality over frames.

    Example:
        metric = PanopticQuality(num_classes=19, things_list=[11, 13], ignore_label=255,
                                 label_divisor=1000)
        metric.update_state(gt, pred)
        metric.result()['PQ']
    """

    def __init__(
        self,
        num_classes: int,
        things_list: Sequence[int],
        ignore_label: int,
        label_divisor: int,
    ):
        """Initialises an empty metric.

        Args:
            num_classes: number of semantic classes (ids 0..num_classes-1).
            things_list: class ids of the thing classes.
            ignore_label: semantic id of void pixels.
            label_divisor: panoptic label = semantic * label_divisor + instance.

        Raises:
            ValueError: an argument is out of range.
        """
        if num_classes < 1 or label_divisor < 1:
            raise ValueError(
                f"num_classes ({num_classes}) and label_divisor ({label_divisor}) must be >= 1"
            )
        bad_things = [t for t in things_list if not 0 <= t < num_classes or t == ignore_label]
        if bad_things:
            raise ValueError(
                f"things_list ids {bad_things} are not classes in 0..{num_classes - 1} "
                f"other than the ignore label {ignore_label}"
            )
        self._num_classes = num_classes
        self._things_list = tuple(int(t) for t in things_list)
        self._ignore_label = ignore_label
        self._label_divisor = label_divisor
        self._bound = label_counts.label_bound(num_classes, ignore_label, label_divisor)
        self._void = ignore_label * label_divisor
        # Indexed by semantic id (classes and the ignore label).
        self._is_thing = np.zeros(self._bound // label_divisor, bool)
        self._is_thing[list(self._things_list)] = True
        self._stats = ClassStats.zeros(num_classes)

    @property
    def bound(self) -> int:
        """Labels of `frame_pairs` lie in [0, bound)."""
        return self._bound

    def config(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {
            "num_classes": self._num_classes,
            "things_list": list(self._things_list),
            "ignore_label": self._ignore_label,
            "label_divisor": self._label_divisor,
        }

    def frame_pairs(self, y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts the (ground-truth segment, predicted segment) pairs of one frame.

        Args:
            y_true: int [height, width] ground-truth panoptic labels, numpy or eager tensor.
            y_pred: int [height, width] predicted panoptic labels, same shape.

        Returns:
            (gt, pred, count): int64 [num_pairs] each; every void label is replaced by the
            one void id `ignore_label * label_divisor`.

        Raises:
            TypeError: labels are not integers.
            ValueError: shapes differ, or a label names an unknown class.
        """
        gt, pred, count = label_counts.label_pairs(
            label_counts.as_label_map(y_true, "ground truth"),
            label_counts.as_label_map(y_pred, "prediction"),
            self._bound,
        )
        for name, labels in (("ground truth", gt), ("prediction", pred)):
            label_counts.check_classes(
                labels // self._label_divisor, self._num_classes, self._ignore_label, name
            )
        gt = np.where(gt // self._label_divisor == self._ignore_label, self._void, gt)
        pred = np.where(pred // self._label_divisor == self._ignore_label, self._void, pred)
        return label_counts.concat_pairs([(gt, pred, count)], self._bound)

    def match(self, gt: np.ndarray, pred: np.ndarray, count: np.ndarray) -> ClassStats:
        """Matches segments given their pair counts (one frame, or the frames of a tube).

        Args:
            gt: int64 [num_pairs] ground-truth segment ids (void as in `frame_pairs`).
            pred: int64 [num_pairs] predicted segment ids.
            count: int64 [num_pairs] pixels of each pair; pairs are distinct.

        Returns:
            The per-class sums of this comparison.
        """
        divisor = self._label_divisor
        gt_ids, gt_index = np.unique(gt, return_inverse=True)
        pred_ids, pred_index = np.unique(pred, return_inverse=True)
        gt_area = np.bincount(gt_index, weights=count, minlength=gt_ids.size)
        pred_area = np.bincount(pred_index, weights=count, minlength=pred_ids.size)
        gt_class, pred_class = gt // divisor, pred // divisor
        gt_void, pred_void = gt == self._void, pred == self._void
        gt_crowd = self._is_thing[gt_class] & (gt % divisor == 0)

        def per_prediction(selected: np.ndarray) -> np.ndarray:
            return np.bincount(
                pred_index[selected], weights=count[selected], minlength=pred_ids.size
            )

        void_overlap = per_prediction(gt_void)
        crowd_overlap = per_prediction(gt_crowd & (gt_class == pred_class))
        union = gt_area[gt_index] + pred_area[pred_index] - count - void_overlap[pred_index]
        candidate = ~gt_void & ~pred_void & ~gt_crowd & (gt_class == pred_class)
        iou = np.where(candidate, count / np.maximum(union, 1), 0.0)
        matched = candidate & (iou > _MATCH_IOU)

        stats = ClassStats.zeros(self._num_classes)
        stats.tp += np.bincount(gt_class[matched], minlength=self._num_classes)
        stats.iou += np.bincount(
            gt_class[matched], weights=iou[matched], minlength=self._num_classes
        )
        gt_matched = np.zeros(gt_ids.size, bool)
        gt_matched[gt_index[matched]] = True
        pred_matched = np.zeros(pred_ids.size, bool)
        pred_matched[pred_index[matched]] = True

        segment_class = gt_ids // divisor
        missed = ~gt_matched & (gt_ids != self._void)
        missed &= ~(self._is_thing[segment_class] & (gt_ids % divisor == 0))
        stats.fn += np.bincount(segment_class[missed], minlength=self._num_classes)
        ignored = (void_overlap + crowd_overlap) / pred_area > _IGNORED_FRACTION
        false_positive = ~pred_matched & (pred_ids != self._void) & ~ignored
        stats.fp += np.bincount(pred_ids[false_positive] // divisor, minlength=self._num_classes)
        return stats

    def add_pairs(self, gt: np.ndarray, pred: np.ndarray, count: np.ndarray) -> None:
        """Scores one comparison given as pair counts (see `match`) and accumulates it."""
        self._stats += self.match(gt, pred, count)

    def update_state(self, y_true: Any, y_pred: Any) -> None:
        """Scores one frame (see `frame_pairs` for the arguments) and accumulates it."""
        self.add_pairs(*self.frame_pairs(y_true, y_pred))

    def result(self) -> dict[str, float]:
        """'PQ', 'SQ', 'RQ' over all frames and their '_thing' / '_stuff' variants."""
        return summarize(self._stats, self._is_thing[: self._num_classes])

    def per_class_results(self) -> dict[str, np.ndarray]:
        """Per-class 'PQ', 'SQ', 'RQ', 'IoU', 'TP', 'FP', 'FN' ([num_classes] arrays)."""
        return per_class(self._stats)

    def reset_states(self) -> None:
        """Forgets every frame."""
        self._stats = ClassStats.zeros(self._num_classes)

    def get_state(self) -> dict[str, Any]:
        """The accumulated sums as numpy arrays (picklable; see `from_state`)."""
        return {"config": self.config(), "stats": self._stats.as_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PanopticQuality":
        """Builds a metric holding the sums of `state` (from `get_state`)."""
        metric = cls(**state["config"])
        metric._add_state(state)
        return metric

    def merge_state(self, metrics: Iterable["PanopticQuality"]) -> None:
        """Adds the sums of other PanopticQuality metrics (e.g. evaluation shards).

        Raises:
            ValueError: a metric was built with different arguments.
        """
        for metric in metrics:
            self._add_state(metric.get_state())

    def _add_state(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config():
            raise ValueError(
                f"cannot merge PQ states built with {state['config']} into {self.config()}"
            )
        self._stats += ClassStats(**{k: np.array(v) for k, v in state["stats"].items()})
