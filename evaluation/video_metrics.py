"""STQ, VPQ and frame PQ of one evaluation, created, updated, merged and reported together.

The trainer's evaluator and the `deeplab-video-eval` CLI both score through a
`VideoMetrics`, so both report the same result dict (see `VideoMetrics.results`).
"""

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deeplab_video.evaluation import pq, stq, vpq

# STQ's id-pair offset when none is given: 2**16 * label_divisor, as DeepLab2 sets it.
DEFAULT_STQ_OFFSET_FACTOR = 2**16


class VideoMetrics:
    """The three metrics of a video panoptic evaluation.

    Args:
        dataset: an object with num_classes, thing_ids, ignore_label, label_divisor and
            optionally class_names (a DatasetDescriptor or `evaluate_lib.LabelSpace`).
        window_sizes: VPQ window sizes in annotated frames.
        stq_offset: STQ id-pair offset; 0 picks 2**16 * label_divisor.
        frame_pq: whether per-frame PQ is computed (else reported as None).
    """

    def __init__(
        self,
        dataset: Any,
        window_sizes: Sequence[int] = (1, 2, 3, 4),
        stq_offset: int = 0,
        frame_pq: bool = True,
    ):
        self._dataset = dataset
        args = (
            dataset.num_classes,
            [int(t) for t in dataset.thing_ids],
            dataset.ignore_label,
            dataset.label_divisor,
        )
        offset = stq_offset or DEFAULT_STQ_OFFSET_FACTOR * dataset.label_divisor
        self.stq = stq.STQuality(*args, offset)
        self.vpq = vpq.VideoPanopticQuality(*args, window_sizes=tuple(window_sizes) or (1, 2, 3, 4))
        self.pq = pq.PanopticQuality(*args)
        self._frame_pq = frame_pq
        self.num_frames = 0

    def update(self, ground_truth: np.ndarray, prediction: np.ndarray, sequence_id: Any) -> None:
        """Adds one frame (int32 [height, width] panoptic maps) of sequence `sequence_id`."""
        self.stq.update_state(ground_truth, prediction, sequence_id)
        self.vpq.update_state(ground_truth, prediction, sequence_id)
        if self._frame_pq:
            self.pq.update_state(ground_truth, prediction)
        self.num_frames += 1

    def merge(self, others: Iterable["VideoMetrics"]) -> None:
        """Adds the states of other bundles (e.g. shards of one evaluation)."""
        others = list(others)
        self.stq.merge_state([other.stq for other in others])
        self.vpq.merge_state([other.vpq for other in others])
        self.pq.merge_state([other.pq for other in others])
        self.num_frames += sum(other.num_frames for other in others)

    def results(self) -> dict[str, Any]:
        """One JSON-ready dict: 'STQ', 'AQ', 'IoU', the VPQ keys, frame 'PQ' / 'SQ' / 'RQ'
        (None without frame_pq), 'num_sequences', 'num_frames', 'per_sequence' and
        'per_class' lists."""
        dataset, num_frames = self._dataset, self.num_frames
        stq_result = self.stq.result()
        results: dict[str, Any] = {
            "num_sequences": len(stq_result["ID_per_seq"]),
            "num_frames": num_frames,
            "STQ": stq_result["STQ"],
            "AQ": stq_result["AQ"],
            "IoU": stq_result["IoU"],
            **self.vpq.result(),
            **self.pq.result(),
        }
        results["per_sequence"] = [
            {"sequence": str(sequence), "frames": int(length), "STQ": s, "AQ": a, "IoU": i}
            for sequence, length, s, a, i in zip(
                stq_result["ID_per_seq"],
                stq_result["Length_per_seq"],
                stq_result["STQ_per_seq"].tolist(),
                stq_result["AQ_per_seq"].tolist(),
                stq_result["IoU_per_seq"].tolist(),
                strict=True,
            )
        ]
        class_iou = self.stq.per_class_iou()
        tables = {"PQ": self.pq.per_class_results()}
        for n, table in self.vpq.per_class_results().items():
            tables[f"VPQ_window{n}"] = table
        names = tuple(getattr(dataset, "class_names", ()))
        results["per_class"] = []
        for c in range(dataset.num_classes):
            if c == dataset.ignore_label:
                continue
            entry = {
                "class_id": c,
                "name": names[c] if c < len(names) else str(c),
                "is_thing": c in dataset.thing_ids,
                "IoU": float(class_iou[c]),
            }
            for key, table in tables.items():
                # None: the class has no segment in ground truth or prediction.
                counted = table["TP"][c] + table["FP"][c] + table["FN"][c] > 0
                entry[key] = float(table["PQ"][c]) if counted else None
            results["per_class"].append(entry)
        if not self._frame_pq:
            _blank_frame_pq(results)
        return results


def _blank_frame_pq(results: dict[str, Any]) -> None:
    """Marks frame PQ as not computed (None) in a result dict, in place."""
    for key in results:
        if key.startswith(("PQ", "SQ", "RQ")):
            results[key] = None
    for entry in results["per_class"]:
        entry["PQ"] = None
