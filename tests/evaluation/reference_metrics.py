"""Slow, literal reference implementations of STQ and VPQ for tests and benchmarks.

They follow the published definitions step by step, one frame (or window) at a time,
with Python dicts and loops over segment ids, and share no code with
`deeplab_video.evaluation`:

- STQ: Weber et al. 2021 (arXiv:2102.11859), with the per-frame accounting of DeepLab2's
  numpy implementation (void and crowd handling, mean IoU over non-empty entries).
- VPQ: the window loop of VIPSeg's eval_vpq_vspw.py: n frames side by side scored like one
  image with COCO's panoptic-quality matching, sums per class over all windows.

Labels are `semantic * label_divisor + instance`.
"""

import collections

import numpy as np

# Pairs of labels are counted as one int64 key, a * _PAIR_OFFSET + b (labels < 2**31).
_PAIR_OFFSET = 2**31


def _pair_counts(a, b):
    """{(a, b): pixels} over the pixels of two equally shaped label arrays."""
    keys, counts = np.unique(
        a.astype(np.int64).ravel() * _PAIR_OFFSET + b.ravel(), return_counts=True
    )
    return {
        (k // _PAIR_OFFSET, k % _PAIR_OFFSET): n
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True)
    }


class ReferenceSTQ:
    """STQ accumulated frame by frame into dicts, as DeepLab2's numpy version does."""

    def __init__(self, num_classes, things, ignore_label, label_divisor):
        self.num_classes = num_classes
        self.things = set(things)
        self.ignore_label = ignore_label
        self.divisor = label_divisor
        self.sequences = {}  # id -> dict of counters and frame count

    def update(self, gt, pred, sequence_id=0):
        gt = np.asarray(gt, np.int64)
        pred = np.asarray(pred, np.int64)
        seq = self.sequences.setdefault(
            sequence_id,
            {
                "frames": 0,
                "pixels": collections.Counter(),  # (gt class, pred class) -> pixels
                "gt": collections.Counter(),
                "pred": collections.Counter(),
                "both": collections.Counter(),
            },
        )
        seq["frames"] += 1
        gt_class, pred_class = gt // self.divisor, pred // self.divisor
        for (g, p), n in _pair_counts(gt_class, pred_class).items():
            seq["pixels"][(g, p)] += n
        gt_thing = np.isin(gt_class, list(self.things))
        crowd = gt_thing & (gt % self.divisor == 0)
        gt_track = gt_thing & ~crowd
        pred_track = np.isin(pred_class, list(self.things)) & ~crowd
        for label, n in zip(*np.unique(gt[gt_track], return_counts=True), strict=True):
            seq["gt"][int(label)] += int(n)
        for label, n in zip(*np.unique(pred[pred_track], return_counts=True), strict=True):
            seq["pred"][int(label)] += int(n)
        both = gt_track & pred_track
        for (g, p), n in _pair_counts(gt[both], pred[both]).items():
            seq["both"][(g, p)] += n

    def _aq(self, seq):
        total = 0.0
        for gt_id, gt_size in seq["gt"].items():
            inner = 0.0
            for (g, p), tpa in seq["both"].items():
                if g != gt_id:
                    continue
                fpa = seq["pred"][p] - tpa
                fna = gt_size - tpa
                inner += tpa * tpa / (tpa + fpa + fna)
            total += inner / gt_size
        return total, len(seq["gt"])

    def _iou(self, pixels):
        """Mean over classes, plus DeepLab2's void-prediction entry, of non-empty IoUs."""
        void = self.ignore_label
        entries = [c for c in range(self.num_classes) if c != void] + [void]
        ious = []
        for c in entries:
            tp = fp = fn = 0
            for (g, p), n in pixels.items():
                if g == void:
                    continue  # Void ground truth never counts.
                if g == c and p == c:
                    tp += n
                elif p == c:
                    fp += n
                elif g == c:
                    fn += n
            if tp + fp + fn:
                ious.append(tp / (tp + fp + fn))
        return sum(ious) / len(ious) if ious else float("nan")

    def result(self):
        aq_parts = [self._aq(s) for s in self.sequences.values()]
        total_pixels = collections.Counter()
        for seq in self.sequences.values():
            total_pixels.update(seq["pixels"])
        aq = sum(a for a, _ in aq_parts) / max(sum(n for _, n in aq_parts), 1e-15)
        iou = self._iou(total_pixels)
        aq_seq = [a / max(n, 1e-15) for a, n in aq_parts]
        iou_seq = [self._iou(s["pixels"]) for s in self.sequences.values()]
        return {
            "STQ": (aq * iou) ** 0.5,
            "AQ": aq,
            "IoU": iou,
            "STQ_per_seq": [(a * i) ** 0.5 for a, i in zip(aq_seq, iou_seq, strict=True)],
            "AQ_per_seq": aq_seq,
            "IoU_per_seq": iou_seq,
            "ID_per_seq": list(self.sequences),
            "Length_per_seq": [s["frames"] for s in self.sequences.values()],
        }


def _segments(labels, divisor, void, things, is_gt):
    """id -> {'area', 'category', 'crowd'} for every non-void label of a panoptic map."""
    segments = {}
    for label, area in zip(*np.unique(labels, return_counts=True), strict=True):
        category = int(label) // divisor
        if category == void:
            continue
        crowd = is_gt and category in things and int(label) % divisor == 0
        segments[int(label)] = {"area": int(area), "category": category, "crowd": crowd}
    return segments


def panoptic_window_stats(gt, pred, num_classes, things, ignore_label, divisor):
    """COCO panoptic matching of one image; returns per-class [iou, tp, fp, fn] lists."""
    stats = {c: [0.0, 0, 0, 0] for c in range(num_classes)}
    void_gt = ignore_label * divisor
    gt = np.where(gt // divisor == ignore_label, void_gt, gt)
    pred = np.where(pred // divisor == ignore_label, void_gt, pred)
    gt_segments = _segments(gt, divisor, ignore_label, things, True)
    pred_segments = _segments(pred, divisor, ignore_label, things, False)
    overlap = _pair_counts(gt, pred)
    gt_matched, pred_matched = set(), set()
    for (g, p), inter in overlap.items():
        if g not in gt_segments or p not in pred_segments:
            continue
        if gt_segments[g]["crowd"] or gt_segments[g]["category"] != pred_segments[p]["category"]:
            continue
        union = gt_segments[g]["area"] + pred_segments[p]["area"] - inter
        union -= overlap.get((void_gt, p), 0)
        iou = inter / union
        if iou > 0.5:
            stats[gt_segments[g]["category"]][0] += iou
            stats[gt_segments[g]["category"]][1] += 1
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_of_class = {}
    for g, info in gt_segments.items():
        if info["crowd"]:
            crowd_of_class[info["category"]] = g
        elif g not in gt_matched:
            stats[info["category"]][3] += 1
    for p, info in pred_segments.items():
        if p in pred_matched:
            continue
        ignored = overlap.get((void_gt, p), 0)
        if info["category"] in crowd_of_class:
            ignored += overlap.get((crowd_of_class[info["category"]], p), 0)
        if ignored / info["area"] > 0.5:
            continue
        stats[info["category"]][2] += 1
    return stats


def reference_vpq(videos, num_classes, things, ignore_label, divisor, window_sizes):
    """VPQ of `videos` ({sequence: [(gt, pred), ...]}, frames in order).

    Returns:
        {n: {'PQ', 'PQ_thing', 'PQ_stuff', 'per_class': {c: [iou, tp, fp, fn]}}}.
    """
    out = {}
    for n in window_sizes:
        totals = {c: [0.0, 0, 0, 0] for c in range(num_classes)}
        for frames in videos.values():
            for start in range(len(frames) - n + 1):
                window = frames[start : start + n]
                gt = np.concatenate([g for g, _ in window], axis=1)  # Side by side.
                pred = np.concatenate([p for _, p in window], axis=1)
                stats = panoptic_window_stats(gt, pred, num_classes, things, ignore_label, divisor)
                for c, values in stats.items():
                    totals[c] = [a + b for a, b in zip(totals[c], values, strict=True)]
        result = {"per_class": totals}
        for suffix, keep in (("", None), ("_thing", True), ("_stuff", False)):
            pqs = []
            for c, (iou, tp, fp, fn) in totals.items():
                if c == ignore_label or (keep is not None and (c in things) != keep):
                    continue
                if tp + fp + fn:
                    pqs.append(iou / (tp + 0.5 * fp + 0.5 * fn))
            result["PQ" + suffix] = sum(pqs) / len(pqs) if pqs else 0.0
        out[n] = result
    return out


def random_video(rng, num_frames, height, width, num_classes, things, ignore_label, divisor):
    """A video of moving rectangles and a noisy prediction of it.

    The ground truth has stuff background, thing rectangles (some crowd, instance 0),
    scattered void pixels; the prediction jitters boxes, swaps ids and classes and
    predicts void here and there. Returns (gt frames, pred frames), int64 [h, w] each.
    """
    stuff = [c for c in range(num_classes) if c not in things and c != ignore_label]
    objects = []
    for _ in range(8):
        category = int(rng.choice(things)) if rng.random() < 0.7 else int(rng.choice(stuff))
        instance = int(rng.integers(0, 4)) if category in things else 0
        box = rng.integers([0, 0, 2, 2, -2, -2], [height, width, height // 2, width // 2, 3, 3])
        objects.append((category, instance, *box.tolist()))
    background = int(rng.choice(stuff)) * divisor
    gts, preds = [], []
    for t in range(num_frames):
        gt = np.full((height, width), background, np.int64)
        pred = gt.copy()
        for category, instance, y, x, h, w, vy, vx in objects:
            y, x = (y + vy * t) % height, (x + vx * t) % width
            gt[y : y + h, x : x + w] = category * divisor + instance
            dy, dx = rng.integers(-1, 2, size=2)
            p_category = category if rng.random() > 0.1 else int(rng.integers(num_classes))
            if p_category == ignore_label:
                p_category = category
            p_instance = 0
            if p_category in things:
                p_instance = instance if rng.random() > 0.2 else int(rng.integers(0, 5))
            y0, x0 = max(0, y + dy), max(0, x + dx)
            pred[y0 : y + dy + h, x0 : x + dx + w] = p_category * divisor + p_instance
        gt[rng.random((height, width)) < 0.05] = ignore_label * divisor
        pred[rng.random((height, width)) < 0.03] = ignore_label * divisor
        gts.append(gt)
        preds.append(pred)
    return gts, preds
