"""Identity switches of video panoptic predictions (the CLEAR MOT IDSW count).

K. Bernardin and R. Stiefelhagen, "Evaluating Multiple Object Tracking Performance: The
CLEAR MOT Metrics", EURASIP Journal on Image and Video Processing, 2008. Applied to
segments instead of boxes:

- in every frame, a ground-truth thing segment matches the predicted segment of the same
  class that overlaps it with IoU > iou_threshold (0.5, so the match is unique: segments
  of one frame do not overlap);
- a ground-truth track whose matched predicted id differs from the id of its previous
  match makes one switch; frames in which it is not matched (missed or hidden) are
  skipped, so a track that comes back with its old id makes none (fragmentations are
  not counted);
- void ground-truth pixels are left out of both segments, as PQ does; ground-truth
  thing pixels with instance 0 (crowd) and predicted thing pixels with instance 0 are
  never matched.

STQ's AQ also falls when an id is lost or shared, but weighs it by pixels; this count says
how often the tracker changed its mind about an object, the failure Video-kMaX's LA-MB
addresses. Frames of one sequence must arrive in order; sequences may interleave.
"""

import collections
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from deeplab_video.evaluation import label_counts


class IdSwitches:
    """Streaming identity-switch count over frames of many sequences.

    Example:
        metric = IdSwitches(num_classes=6, things_list=[3, 4, 5], ignore_label=255,
                            label_divisor=1000)
        for sequence_id, gt, pred in frames:
            metric.update_state(gt, pred, sequence_id)
        metric.result()["IDSW"]
    """

    def __init__(
        self,
        num_classes: int,
        things_list: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        iou_threshold: float = 0.5,
    ):
        """Initialises an empty count.

        Args:
            num_classes: number of semantic classes (ids 0..num_classes-1).
            things_list: class ids of the thing classes (the tracked ones).
            ignore_label: the void class id.
            label_divisor: panoptic label = semantic * label_divisor + instance.
            iou_threshold: a match needs IoU above it; 0.5 or more keeps matches unique.

        Raises:
            ValueError: iou_threshold below 0.5 or not below 1, or a thing class out of
                range.
        """
        if not 0.5 <= iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must lie in [0.5, 1), got {iou_threshold}")
        self._num_classes = num_classes
        self._ignore_label = ignore_label
        self._label_divisor = label_divisor
        self._iou_threshold = iou_threshold
        self._bound = label_counts.label_bound(num_classes, ignore_label, label_divisor)
        self._is_thing = np.zeros(self._bound // label_divisor, bool)
        label_counts.check_classes(np.asarray(things_list), num_classes, -1, "things_list")
        self._is_thing[list(things_list)] = True
        self.reset_states()

    def reset_states(self) -> None:
        """Forgets every frame seen."""
        # (sequence, ground-truth label) -> predicted label of its last match.
        self._last_match: dict[tuple[Hashable, int], int] = {}
        self._switches: collections.Counter = collections.Counter()
        self._matches: collections.Counter = collections.Counter()
        # Sequences in order of first appearance.
        self._sequences: dict[Hashable, None] = {}

    def update_state(self, y_true: Any, y_pred: Any, sequence_id: Any = 0) -> None:
        """Adds one frame.

        Args:
            y_true: int [height, width] ground-truth panoptic labels, numpy or eager tensor.
            y_pred: int [height, width] predicted panoptic labels, same shape.
            sequence_id: the sequence the frame belongs to (int, str or scalar tensor).

        Raises:
            TypeError: labels are not integers.
            ValueError: shapes differ, or a label names an unknown class.
        """
        gt, pred, count = label_counts.label_pairs(
            label_counts.as_label_map(y_true, "ground truth"),
            label_counts.as_label_map(y_pred, "prediction"),
            self._bound,
        )
        divisor = self._label_divisor
        gt_semantic, pred_semantic = gt // divisor, pred // divisor
        label_counts.check_classes(gt_semantic, self._num_classes, self._ignore_label, "gt")
        label_counts.check_classes(pred_semantic, self._num_classes, self._ignore_label, "pred")
        sequence = label_counts.sequence_key(sequence_id)
        self._sequences.setdefault(sequence)
        labelled = gt_semantic != self._ignore_label
        gt_track = self._is_thing[gt_semantic] & (gt % divisor != 0)
        pred_track = labelled & self._is_thing[pred_semantic] & (pred % divisor != 0)
        gt_ids, gt_area = label_counts.sum_by_key(gt[gt_track], count[gt_track])
        pred_ids, pred_area = label_counts.sum_by_key(pred[pred_track], count[pred_track])
        both = gt_track & pred_track & (gt_semantic == pred_semantic)
        union = (
            gt_area[np.searchsorted(gt_ids, gt[both])]
            + pred_area[np.searchsorted(pred_ids, pred[both])]
            - count[both]
        )
        matched = count[both] > self._iou_threshold * union
        for gt_label, pred_label in zip(gt[both][matched], pred[both][matched], strict=True):
            key = (sequence, int(gt_label))
            previous = self._last_match.get(key)
            if previous is not None and previous != int(pred_label):
                self._switches[sequence] += 1
            self._last_match[key] = int(pred_label)
            self._matches[sequence] += 1

    def result(self) -> dict[str, Any]:
        """The counts so far.

        Returns:
            'IDSW': int, switches over all sequences; 'IDSW_per_seq': {sequence: int};
            'num_tracks': int, ground-truth tracks matched at least once;
            'num_matches': int, matched (track, frame) pairs.
        """
        return {
            "IDSW": int(sum(self._switches.values())),
            "IDSW_per_seq": {s: int(self._switches[s]) for s in self._sequences},
            "num_tracks": len(self._last_match),
            "num_matches": int(sum(self._matches.values())),
        }
