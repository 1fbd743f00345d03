"""Segmentation and Tracking Quality (STQ).

STQ is the geometric mean of the association quality AQ (how well the predicted track
ids follow the ground-truth tracks of `thing` classes, a pixel-weighted IoU between
tubes) and the segmentation quality, the mean class IoU:

    M. Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS Datasets and
    Benchmarks, 2021 (arXiv:2102.11859).

The numbers are those of DeepLab2's `evaluation/numpy/segmentation_and_tracking_quality.py`
(google-research/deeplab2), with a label divisor (`semantic * label_divisor + instance`,
as DeepLab2's TF version) in place of its bit shift; with `label_divisor = 2**bit_shift`
both agree to float precision on every input. As there:

- ground-truth pixels of a thing class with instance 0 are crowd: they are left out of AQ
  for both ground truth and prediction, and count for the class IoU as usual;
- void ground-truth pixels (semantic `ignore_label`) are dropped from the IoU, yet a
  predicted thing segment's size still includes the pixels it puts on void;
- a labelled pixel predicted as `ignore_label` counts as a miss for its class and makes
  the void column enter the mean IoU with an IoU of 0 (DeepLab2 keeps that column);
- a sequence whose ground truth and prediction are all void has an undefined (NaN) IoU.

Unlike DeepLab2 the counting is vectorised: one joint histogram of the (ground truth,
prediction) pairs of each frame, counted over runs of equal pairs (see `label_counts`),
then every statistic comes from those few hundred pairs. Counts are kept on the host per
sequence, so frames of different sequences may arrive in any interleaving, and shards of
an evaluation combine with `merge_state` or through `get_state` / `from_state`.
"""

import dataclasses
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from deeplab_video.evaluation import label_counts

_EPSILON = 1e-15


class _SparseCounts:
    """Pixel counts per int64 key, accumulated over frames and summed in batches."""

    _MAX_PENDING = 64

    def __init__(self):
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self._keys.append(keys)
        self._counts.append(counts)
        if len(self._keys) > self._MAX_PENDING:
            self.totals()

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (sorted int64 keys [n], int64 counts [n]) with every key once."""
        if not self._keys:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if len(self._keys) > 1:
            keys, counts = label_counts.sum_by_key(
                np.concatenate(self._keys), np.concatenate(self._counts)
            )
            self._keys, self._counts = [keys], [counts]
        return self._keys[0], self._counts[0]


@dataclasses.dataclass
class _SequenceCounts:
    """Everything STQ keeps about one sequence."""

    confusion: np.ndarray  # float64 [size, size]: rows ground truth, columns prediction.
    length: int = 0
    gt: _SparseCounts = dataclasses.field(default_factory=_SparseCounts)
    pred: _SparseCounts = dataclasses.field(default_factory=_SparseCounts)
    intersections: _SparseCounts = dataclasses.field(default_factory=_SparseCounts)


class STQuality:
    """Streaming Segmentation and Tracking Quality over frames of many sequences.

    Example:
        metric = STQuality(num_classes=19, things_list=[11, 13], ignore_label=255,
                           label_divisor=1000, offset=2**16 * 1000)
        for sequence_id, gt, pred in frames:
            metric.update_state(gt, pred, sequence_id)
        metric.result()['STQ']
    """

    def __init__(
        self,
        num_classes: int,
        things_list: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        offset: int,
    ):
        """Initialises an empty metric.

        Args:
            num_classes: number of semantic classes (ids 0..num_classes-1).
            things_list: class ids of the thing classes (tracked, scored by AQ).
            ignore_label: semantic id of void pixels.
            label_divisor: panoptic label = semantic * label_divisor + instance.
            offset: encodes a (ground-truth id, predicted id) pair as `gt * offset + pred`;
                must be at least `num_classes * label_divisor` (DeepLab2's bound).

        Raises:
            ValueError: an argument is out of range, or `offset` is too small or too large
                for int64 pair ids.
        """
        if num_classes < 1 or label_divisor < 1:
            raise ValueError(
                f"num_classes ({num_classes}) and label_divisor ({label_divisor}) must be >= 1"
            )
        bad_things = [t for t in things_list if not 0 <= t < num_classes]
        if bad_things:
            raise ValueError(f"things_list ids {bad_things} are not in 0..{num_classes - 1}")
        lower_bound = num_classes * label_divisor
        if offset < lower_bound:
            raise ValueError(
                f"offset {offset} is too small: it must be at least num_classes * "
                f"label_divisor = {lower_bound} so that id pairs stay unique"
            )
        if lower_bound * offset + offset > np.iinfo(np.int64).max:
            raise ValueError(f"offset {offset} overflows int64 id pairs; choose a smaller one")
        self._num_classes = num_classes
        self._things_list = tuple(int(t) for t in things_list)
        self._ignore_label = ignore_label
        self._label_divisor = label_divisor
        self._offset = offset
        self._bound = label_counts.label_bound(num_classes, ignore_label, label_divisor)
        if ignore_label >= num_classes:
            self._size = num_classes + 1
            self._include = np.arange(num_classes)
        else:
            self._size = num_classes
            self._include = np.array([c for c in range(num_classes) if c != ignore_label])
        self._include_rows = np.isin(np.arange(self._size), self._include)[:, None]
        self._is_thing = np.zeros(self._size, bool)
        self._is_thing[list(self._things_list)] = True
        self._sequences: dict[Hashable, _SequenceCounts] = {}

    def _config(self) -> dict[str, Any]:
        return {
            "num_classes": self._num_classes,
            "things_list": list(self._things_list),
            "ignore_label": self._ignore_label,
            "label_divisor": self._label_divisor,
            "offset": self._offset,
        }

    def _empty(self) -> np.ndarray:
        return np.zeros((self._size, self._size), np.float64)

    def _sequence(self, key: Hashable) -> _SequenceCounts:
        if key not in self._sequences:
            self._sequences[key] = _SequenceCounts(self._empty())
        return self._sequences[key]

    def _semantic(self, labels: np.ndarray, name: str) -> np.ndarray:
        """Semantic ids of panoptic labels, void mapped into the confusion matrix range."""
        semantic = labels // self._label_divisor
        label_counts.check_classes(semantic, self._num_classes, self._ignore_label, name)
        if self._ignore_label > self._num_classes:
            semantic = np.where(semantic == self._ignore_label, self._num_classes, semantic)
        return semantic

    def update_state(self, y_true: Any, y_pred: Any, sequence_id: Any = 0) -> None:
        """Adds one frame.

        Args:
            y_true: int [height, width] ground-truth panoptic labels, numpy or eager tensor.
            y_pred: int [height, width] predicted panoptic labels, same shape.
            sequence_id: the sequence the frame belongs to (int, str or scalar tensor);
                frames of different sequences may be interleaved.

        Raises:
            TypeError: labels are not integers.
            ValueError: shapes differ, or a label names an unknown class.
        """
        gt, pred, count = label_counts.label_pairs(
            label_counts.as_label_map(y_true, "ground truth"),
            label_counts.as_label_map(y_pred, "prediction"),
            self._bound,
        )
        gt_semantic = self._semantic(gt, "ground truth")
        pred_semantic = self._semantic(pred, "prediction")
        sequence = self._sequence(label_counts.sequence_key(sequence_id))
        sequence.length += 1
        sequence.confusion += np.bincount(
            gt_semantic * self._size + pred_semantic, weights=count, minlength=self._size**2
        ).reshape(self._size, self._size)

        gt_thing = self._is_thing[gt_semantic]
        crowd = gt_thing & (gt % self._label_divisor == 0)
        gt_track = gt_thing & ~crowd
        pred_track = self._is_thing[pred_semantic] & ~crowd
        both = gt_track & pred_track
        sequence.gt.add(*label_counts.sum_by_key(gt[gt_track], count[gt_track]))
        sequence.pred.add(*label_counts.sum_by_key(pred[pred_track], count[pred_track]))
        sequence.intersections.add(gt[both] * self._offset + pred[both], count[both])

    def _association(self, sequence: _SequenceCounts) -> tuple[float, int]:
        """Returns (sum over gt tubes of their AQ contribution, number of gt tubes)."""
        gt_ids, gt_sizes = sequence.gt.totals()
        pred_ids, pred_sizes = sequence.pred.totals()
        pair_ids, tpa = sequence.intersections.totals()
        gt_size = gt_sizes[np.searchsorted(gt_ids, pair_ids // self._offset)]
        pred_size = pred_sizes[np.searchsorted(pred_ids, pair_ids % self._offset)]
        iou = tpa / (gt_size + pred_size - tpa)
        return float(np.sum(tpa * iou / gt_size)), int(gt_ids.size)

    def _ious(self, confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(intersections, unions) float64 [size] after dropping the void ground-truth row."""
        confusion = np.where(self._include_rows, confusion, 0.0)
        intersections = confusion.diagonal()
        return intersections, confusion.sum(axis=0) + confusion.sum(axis=1) - intersections

    def _class_iou(self, confusion: np.ndarray) -> float:
        """Mean IoU over the entries with a non-empty union (DeepLab2's accounting)."""
        intersections, unions = self._ious(confusion)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(
                np.sum(intersections / np.maximum(unions, _EPSILON)) / np.count_nonzero(unions)
            )

    def per_class_iou(self) -> np.ndarray:
        """float64 [num_classes] IoU of each class over all sequences (NaN: no pixels)."""
        intersections, unions = self._ious(self._total_confusion())
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(unions > 0, intersections / unions, np.nan)[: self._num_classes]
        if self._ignore_label < self._num_classes:
            iou[self._ignore_label] = np.nan
        return iou

    def _total_confusion(self) -> np.ndarray:
        confusions = [s.confusion for s in self._sequences.values()]
        return np.sum(confusions, axis=0) if confusions else self._empty()

    def result(self) -> dict[str, Any]:
        """Computes STQ, AQ and IoU over all frames seen so far.

        Returns:
            A dict with 'STQ', 'AQ', 'IoU' (floats over all sequences), 'STQ_per_seq',
            'AQ_per_seq', 'IoU_per_seq' (float64 [num_sequences]), 'ID_per_seq' (the
            sequence ids, in order of first appearance) and 'Length_per_seq' (frames).
        """
        association = [self._association(s) for s in self._sequences.values()]
        aq_sums = np.array([a for a, _ in association], np.float64)
        num_tubes = np.array([n for _, n in association], np.float64)
        aq = float(np.sum(aq_sums) / np.maximum(np.sum(num_tubes), _EPSILON))
        aq_per_seq = aq_sums / np.maximum(num_tubes, _EPSILON)

        iou_per_seq = np.array(
            [self._class_iou(s.confusion) for s in self._sequences.values()], np.float64
        )
        iou = self._class_iou(self._total_confusion())
        return {
            "STQ": float(np.sqrt(aq * iou)),
            "AQ": aq,
            "IoU": iou,
            "STQ_per_seq": np.sqrt(aq_per_seq * iou_per_seq),
            "AQ_per_seq": aq_per_seq,
            "IoU_per_seq": iou_per_seq,
            "ID_per_seq": list(self._sequences),
            "Length_per_seq": [s.length for s in self._sequences.values()],
        }

    def reset_states(self) -> None:
        """Forgets every frame."""
        self._sequences = {}

    def merge_state(self, metrics: Iterable["STQuality"]) -> None:
        """Adds the counts of other STQuality metrics (e.g. evaluation shards) to this one.

        A sequence seen by several metrics gets its counts summed, so the frames of one
        sequence may be split across shards in any way.

        Raises:
            ValueError: a metric was built with different arguments.
        """
        for metric in metrics:
            self._add_state(metric.get_state())

    def get_state(self) -> dict[str, Any]:
        """Returns the accumulated counts as plain numpy arrays and Python values.

        The dict pickles, and `STQuality.from_state` turns it back into a metric.
        """
        sequences = []
        for key, sequence in self._sequences.items():
            sequences.append(
                {
                    "id": key,
                    "length": sequence.length,
                    "confusion": sequence.confusion.copy(),
                    "gt": sequence.gt.totals(),
                    "pred": sequence.pred.totals(),
                    "intersections": sequence.intersections.totals(),
                }
            )
        return {"config": self._config(), "sequences": sequences}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "STQuality":
        """Builds a metric holding the counts of `state` (from `get_state`)."""
        metric = cls(**state["config"])
        metric._add_state(state)
        return metric

    def _add_state(self, state: dict[str, Any]) -> None:
        if state["config"] != self._config():
            raise ValueError(
                f"cannot merge STQ states built with {state['config']} into {self._config()}"
            )
        for entry in state["sequences"]:
            sequence = self._sequence(entry["id"])
            sequence.length += entry["length"]
            sequence.confusion += entry["confusion"]
            sequence.gt.add(*entry["gt"])
            sequence.pred.add(*entry["pred"])
            sequence.intersections.add(*entry["intersections"])
