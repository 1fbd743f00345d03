"""Video panoptic quality (VPQ): panoptic quality of tubes over windows of frames.

    D. Kim, S. Woo, J.-Y. Lee, I. S. Kweon, "Video Panoptic Segmentation", CVPR 2020;
    J. Miao et al., "Large-scale Video Panoptic Segmentation in the Wild: A Benchmark"
    (VIPSeg), CVPR 2022.

For a window size n, every run of n consecutive frames of a sequence (the window slides
by one frame) is scored like one image made of the n frames side by side: a tube is the
set of pixels with one label in those frames, and tubes are matched with the panoptic
quality accounting of `pq` (IoU > 0.5, same class, void and crowd as COCO). IoU, TP, FP
and FN are summed per class over all windows of all sequences; PQ is then computed per
class and averaged over the classes with TP + FP + FN > 0. VPQ is the mean over the
window sizes of that average, and VPQ_thing / VPQ_stuff likewise over thing / stuff
classes. This is the arithmetic of `eval_vpq_vspw.py` in VIPSeg-Dataset/VIPSeg-Dataset
(ClipPanoFCN), which VIPSeg and Video-kMaX report; window sizes 1..4 of VIPSeg's
annotated frames are its k = 0, 5, 10, 15.

Where our numbers may differ from that script:
- it reads COCO-format RGB PNGs with a JSON of segments; we read panoptic label maps
  (`semantic * label_divisor + instance`). Each distinct label is one segment, its class
  is `label // label_divisor`, every label of the `ignore_label` class is void (COCO id
  0), and crowd is instance 0 of a thing class (one crowd region per class, as the
  script keeps one per category). VIPSeg has no crowd, so there the two agree exactly.
- it reports percentages; we report fractions in [0, 1].
- when a group (things or stuff) has no class to average over, it divides by zero; we
  report 0.0 for that window.
- its final VPQ averages the window sizes it is given, as ours does; pass the same
  window sizes (and only the annotated frames) to compare.
- a window is formed from the frames as they arrive, so each sequence must be fed in
  frame order; sequences shorter than n contribute no n-frame windows.
"""

import collections
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from deeplab_video.evaluation import label_counts, pq


class VideoPanopticQuality:
    """Streaming VPQ over frames of many sequences.

    Example:
        metric = VideoPanopticQuality(num_classes=124, things_list=vipseg.thing_ids,
                                      ignore_label=255, label_divisor=10000)
        for sequence_id, gt, pred in frames:   # each sequence in frame order
            metric.update_state(gt, pred, sequence_id)
        metric.result()['VPQ']
    """

    def __init__(
        self,
        num_classes: int,
        things_list: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        window_sizes: Sequence[int] = (1, 2, 3, 4),
    ):
        """Initialises an empty metric.

        Args:
            num_classes: number of semantic classes (ids 0..num_classes-1).
            things_list: class ids of the thing classes.
            ignore_label: semantic id of void pixels.
            label_divisor: panoptic label = semantic * label_divisor + instance.
            window_sizes: tube lengths, in frames as fed to `update_state`.

        Raises:
            ValueError: an argument is out of range, or window sizes are missing, repeated
                or not positive.
        """
        sizes = [int(n) for n in window_sizes]
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError(f"window_sizes must be distinct positive ints, got {window_sizes}")
        self._window_sizes = tuple(sizes)
        self._windows = {
            n: pq.PanopticQuality(num_classes, things_list, ignore_label, label_divisor)
            for n in sizes
        }
        self._frames = self._windows[sizes[0]]  # Turns frames into pair counts.
        self._recent: dict[Hashable, collections.deque] = {}
        self._lengths: dict[Hashable, int] = {}

    @property
    def window_sizes(self) -> tuple[int, ...]:
        return self._window_sizes

    def _config(self) -> dict[str, Any]:
        return {**self._frames.config(), "window_sizes": list(self._window_sizes)}

    def update_state(self, y_true: Any, y_pred: Any, sequence_id: Any = 0) -> None:
        """Adds the next frame of a sequence and scores the windows that end on it.

        Args:
            y_true: int [height, width] ground-truth panoptic labels, numpy or eager tensor.
            y_pred: int [height, width] predicted panoptic labels, same shape.
            sequence_id: the sequence the frame belongs to (int, str or scalar tensor).
                Frames of one sequence must come in order; sequences may interleave.

        Raises:
            TypeError: labels are not integers.
            ValueError: shapes differ, or a label names an unknown class.
        """
        pairs = self._frames.frame_pairs(y_true, y_pred)
        key = label_counts.sequence_key(sequence_id)
        if key not in self._recent:
            self._recent[key] = collections.deque(maxlen=max(self._window_sizes))
            self._lengths[key] = 0
        recent = self._recent[key]
        recent.append(pairs)
        self._lengths[key] += 1
        frames = list(recent)
        for n, metric in self._windows.items():
            if len(frames) >= n:
                window = frames[-n:]
                metric.add_pairs(*label_counts.concat_pairs(window, self._frames.bound))

    def window_results(self) -> dict[int, dict[str, float]]:
        """Per window size: 'PQ', 'SQ', 'RQ' and '_thing' / '_stuff' variants, 'N's."""
        return {n: metric.result() for n, metric in self._windows.items()}

    def per_class_results(self) -> dict[int, dict[str, np.ndarray]]:
        """Per window size: per-class 'PQ', 'SQ', 'RQ', 'IoU', 'TP', 'FP', 'FN'."""
        return {n: metric.per_class_results() for n, metric in self._windows.items()}

    def result(self) -> dict[str, float]:
        """Computes VPQ.

        Returns:
            'VPQ', 'VPQ_thing', 'VPQ_stuff' (means over window sizes) and, for each window
            size n, 'VPQ_window{n}', 'VPQ_thing_window{n}', 'VPQ_stuff_window{n}',
            'VSQ_window{n}' and 'VRQ_window{n}'. All are fractions in [0, 1].
        """
        windows = self.window_results()
        result = {}
        for suffix in ("", "_thing", "_stuff"):
            result["VPQ" + suffix] = float(np.mean([w["PQ" + suffix] for w in windows.values()]))
        for n, window in windows.items():
            for suffix in ("", "_thing", "_stuff"):
                result[f"VPQ{suffix}_window{n}"] = window["PQ" + suffix]
            result[f"VSQ_window{n}"] = window["SQ"]
            result[f"VRQ_window{n}"] = window["RQ"]
        return result

    def reset_states(self) -> None:
        """Forgets every frame."""
        for metric in self._windows.values():
            metric.reset_states()
        self._recent = {}
        self._lengths = {}

    def get_state(self) -> dict[str, Any]:
        """The accumulated sums and each sequence's last frames (picklable).

        `VideoPanopticQuality.from_state` turns it back into a metric that can go on
        with the same sequences.
        """
        return {
            "config": self._config(),
            "windows": {n: metric.get_state() for n, metric in self._windows.items()},
            "sequences": [
                {"id": key, "length": self._lengths[key], "recent": list(recent)}
                for key, recent in self._recent.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "VideoPanopticQuality":
        """Builds a metric holding the contents of `state` (from `get_state`)."""
        metric = cls(**state["config"])
        metric._add_state(state)
        return metric

    def merge_state(self, metrics: Iterable["VideoPanopticQuality"]) -> None:
        """Adds the sums of other metrics that saw other sequences (evaluation shards).

        Raises:
            ValueError: a metric was built with different arguments, or two metrics saw
                the same sequence (windows across the split would be lost: give each
                shard whole sequences).
        """
        for metric in metrics:
            self._add_state(metric.get_state())

    def _add_state(self, state: dict[str, Any]) -> None:
        if state["config"] != self._config():
            raise ValueError(
                f"cannot merge VPQ states built with {state['config']} into {self._config()}"
            )
        shared = [s["id"] for s in state["sequences"] if s["id"] in self._recent]
        if shared:
            raise ValueError(
                f"sequences {shared} were seen by both metrics; VPQ windows cannot be "
                "merged across a split sequence, so give each shard whole sequences"
            )
        for n, metric in self._windows.items():
            metric.merge_state([pq.PanopticQuality.from_state(state["windows"][n])])
        for entry in state["sequences"]:
            self._recent[entry["id"]] = collections.deque(
                entry["recent"], maxlen=max(self._window_sizes)
            )
            self._lengths[entry["id"]] = entry["length"]
