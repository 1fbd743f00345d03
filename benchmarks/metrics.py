"""Times STQ and VPQ on a KITTI-STEP-sized sequence against straightforward implementations.

The sequence (default 50 frames of 375x1242, 19 classes, about 20 tracked objects per
frame) is generated deterministically. Each case evaluates the whole sequence (update on
every frame, then the result) and prints one JSON record: case, frames, frame size,
warm-up runs, timed runs, median and p90 seconds per sequence, frames per second. The
straightforward implementations are the per-frame, dict-based ones of
tests/evaluation/reference_metrics.py (DeepLab2's numpy STQ algorithm; the window loop of
VIPSeg's eval_vpq_vspw.py). A last record per metric gives the speed-up and the largest
difference between the two results.

  python benchmarks/metrics.py --frames=50 --repeats=3
"""

import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from deeplab_video.evaluation import stq, vpq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.evaluation import reference_metrics  # noqa: E402

_FRAMES = flags.DEFINE_integer("frames", 50, "Frames in the sequence.")
_HEIGHT = flags.DEFINE_integer("height", 375, "Frame height (KITTI-STEP: 375).")
_WIDTH = flags.DEFINE_integer("width", 1242, "Frame width (KITTI-STEP: 1242).")
_OBJECTS = flags.DEFINE_integer("objects", 20, "Tracked objects per frame.")
_WINDOWS = flags.DEFINE_list("window_sizes", ["1", "2", "3", "4"], "VPQ window sizes.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed runs before timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per case.")

NUM_CLASSES, THINGS, IGNORE, DIVISOR = 19, (11, 13), 255, 1000
_STUFF_BANDS = (10, 2, 8, 1, 0)  # Sky, building, vegetation, sidewalk, road: top to bottom.


def make_sequence(num_frames, height, width, num_objects, seed=0):
    """A deterministic driving-like sequence and a plausible prediction of it.

    Ground truth: stuff bands with wavy borders, `num_objects` moving boxes of person / car
    (a few crowd), void blocks. Prediction: shifted borders and boxes, some class errors,
    and an id switch of every fifth object halfway through.

    Returns:
        (gt, pred): lists of int32 [height, width] panoptic maps.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    objects = []
    for k in range(num_objects):
        category = THINGS[k % 2]
        instance = 0 if k % 10 == 9 else k + 1  # Every tenth object is crowd.
        size = rng.integers([height // 12, width // 30], [height // 4, width // 8])
        start = rng.integers([height // 3, 0], [height - size[0], width - size[1]])
        velocity = rng.integers([-2, -12], [3, 13])
        objects.append((category, instance, size, start, velocity))
    gts, preds = [], []
    for t in range(num_frames):
        border = (np.arange(len(_STUFF_BANDS))[:, None] + 1) * height / (len(_STUFF_BANDS) + 1)
        wave = 6 * np.sin(cols[0] / 90.0 + t / 7.0)
        band = (rows[None] > (border + wave)[:, None, :]).sum(0)
        pred_band = (rows[None] > (border + wave + 3)[:, None, :]).sum(0)
        gt = np.asarray(_STUFF_BANDS)[np.minimum(band, len(_STUFF_BANDS) - 1)] * DIVISOR
        pred = np.asarray(_STUFF_BANDS)[np.minimum(pred_band, len(_STUFF_BANDS) - 1)] * DIVISOR
        for k, (category, instance, size, start, velocity) in enumerate(objects):
            y, x = (start + velocity * t) % [height - size[0], width - size[1]]
            gt[y : y + size[0], x : x + size[1]] = category * DIVISOR + instance
            dy, dx = (k % 5) - 2, (k % 7) - 3
            p_instance = k + 1 + (100 if k % 5 == 0 and t >= num_frames // 2 else 0)
            p_category = category if k % 8 else 14  # Some cars become trucks.
            y0, x0 = max(y + dy, 0), max(x + dx, 0)
            pred[y0 : y + dy + size[0], x0 : x + dx + size[1]] = p_category * DIVISOR + p_instance
        for _ in range(12):
            y, x = rng.integers([0, 0], [height - 10, width - 10])
            gt[y : y + 10, x : x + 10] = IGNORE * DIVISOR
        gts.append(gt.astype(np.int32))
        preds.append(pred.astype(np.int32))
    return gts, preds


def _stq_vectorized(gts, preds):
    metric = stq.STQuality(NUM_CLASSES, THINGS, IGNORE, DIVISOR, 2**16 * DIVISOR)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update_state(gt, pred, "seq")
    return metric.result()["STQ"]


def _stq_reference(gts, preds):
    metric = reference_metrics.ReferenceSTQ(NUM_CLASSES, THINGS, IGNORE, DIVISOR)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update(gt, pred, "seq")
    return metric.result()["STQ"]


def _vpq_vectorized(gts, preds, windows):
    metric = vpq.VideoPanopticQuality(NUM_CLASSES, THINGS, IGNORE, DIVISOR, windows)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update_state(gt, pred, "seq")
    return metric.result()["VPQ"]


def _vpq_reference(gts, preds, windows):
    videos = {"seq": list(zip(gts, preds, strict=True))}
    result = reference_metrics.reference_vpq(videos, NUM_CLASSES, THINGS, IGNORE, DIVISOR, windows)
    return float(np.mean([result[n]["PQ"] for n in windows]))


def _time(run, warmup, repeats):
    for _ in range(warmup):
        run()
    seconds, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        seconds.append(time.perf_counter() - start)
    return seconds, value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    windows = tuple(int(n) for n in _WINDOWS.value)
    gts, preds = make_sequence(_FRAMES.value, _HEIGHT.value, _WIDTH.value, _OBJECTS.value)
    cases = {
        "stq_vectorized": lambda: _stq_vectorized(gts, preds),
        "stq_reference": lambda: _stq_reference(gts, preds),
        "vpq_vectorized": lambda: _vpq_vectorized(gts, preds, windows),
        "vpq_reference": lambda: _vpq_reference(gts, preds, windows),
    }
    medians, values = {}, {}
    for case, run in cases.items():
        seconds, values[case] = _time(run, _WARMUP.value, _REPEATS.value)
        medians[case] = float(np.median(seconds))
        record = {
            "case": case,
            "frames": _FRAMES.value,
            "frame_size": [_HEIGHT.value, _WIDTH.value],
            "window_sizes": list(windows) if case.startswith("vpq") else None,
            "warmup": _WARMUP.value,
            "repeats": _REPEATS.value,
            "median_s": round(medians[case], 4),
            "p90_s": round(float(np.percentile(seconds, 90)), 4),
            "frames_per_s": round(_FRAMES.value / medians[case], 2),
            "value": values[case],
        }
        print(json.dumps(record), flush=True)
    for metric in ("stq", "vpq"):
        record = {
            "case": f"{metric}_speedup",
            "ratio": round(medians[f"{metric}_reference"] / medians[f"{metric}_vectorized"], 2),
            "max_abs_difference": abs(
                values[f"{metric}_reference"] - values[f"{metric}_vectorized"]
            ),
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
