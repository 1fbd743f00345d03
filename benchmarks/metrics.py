"""Times STQ and VPQ against the implementations they replace, side by side in one run.

For each frame size (default: KITTI-STEP's 375x1242 and 720p), a deterministic sequence
(default 50 frames, 19 classes, about 20 tracked objects per frame) is evaluated by every
implementation: update on every frame, then the result. Each case prints one JSON record:
case, frame size, frames, warm-up runs, timed runs, min / median / p90 seconds per
sequence, frames per second and the value (STQ, or VPQ averaged over the window sizes).
A last record per (size, reference) gives the speed-up of ours (ratio of medians) and the
absolute difference of the two results.

References:
- stq_reference / vpq_reference: the literal per-frame, dict-based implementations of
  tests/evaluation/reference_metrics.py (DeepLab2's numpy STQ algorithm; the window loop
  of VIPSeg's eval_vpq_vspw.py), always run;
- stq_deeplab2: DeepLab2's own `evaluation/numpy/segmentation_and_tracking_quality.py`,
  loaded from a checkout given with --deeplab2_dir (labels re-encoded with its bit shift
  of 16; it accumulates in float32, so its STQ differs from ours in the 8th digit);
- vpq_vipseg: `vpq_compute_single_core` of VIPSeg's ClipPanoFCN/eval_vpq_vspw.py, loaded
  from a checkout given with --vipseg_dir, fed COCO-style segments; its PNG reads are
  served from memory so that only the computation is timed, as for ours.

  python benchmarks/metrics.py --sizes=375x1242,720x1280 --frames=50 --repeats=3 \
      --deeplab2_dir=/path/to/deeplab2 --vipseg_dir=/path/to/VIPSeg-Dataset
"""

import importlib.util
import json
import pathlib
import sys
import time
from collections.abc import Callable

import numpy as np
from absl import app, flags

from deeplab_video.evaluation import stq, vpq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.evaluation import reference_metrics  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["375x1242", "720x1280"], "Frame sizes, height x width.")
_FRAMES = flags.DEFINE_integer("frames", 50, "Frames in the sequence.")
_OBJECTS = flags.DEFINE_integer("objects", 20, "Tracked objects per frame.")
_WINDOWS = flags.DEFINE_list("window_sizes", ["1", "2", "3", "4"], "VPQ window sizes.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed runs before timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per case.")
_DEEPLAB2_DIR = flags.DEFINE_string(
    "deeplab2_dir", None, "A DeepLab2 checkout: also time its numpy STQ."
)
_VIPSEG_DIR = flags.DEFINE_string(
    "vipseg_dir", None, "A VIPSeg-Dataset checkout: also time its eval_vpq_vspw.py."
)

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


Sequence = tuple[list[np.ndarray], list[np.ndarray]]


def _stq_ours(gts, preds):
    metric = stq.STQuality(NUM_CLASSES, THINGS, IGNORE, DIVISOR, 2**16 * DIVISOR)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update_state(gt, pred, "seq")
    return metric.result()["STQ"]


def _stq_reference(gts, preds):
    metric = reference_metrics.ReferenceSTQ(NUM_CLASSES, THINGS, IGNORE, DIVISOR)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update(gt, pred, "seq")
    return metric.result()["STQ"]


def _vpq_ours(gts, preds, windows):
    metric = vpq.VideoPanopticQuality(NUM_CLASSES, THINGS, IGNORE, DIVISOR, windows)
    for gt, pred in zip(gts, preds, strict=True):
        metric.update_state(gt, pred, "seq")
    return metric.result()["VPQ"]


def _vpq_reference(gts, preds, windows):
    videos = {"seq": list(zip(gts, preds, strict=True))}
    result = reference_metrics.reference_vpq(videos, NUM_CLASSES, THINGS, IGNORE, DIVISOR, windows)
    return float(np.mean([result[n]["PQ"] for n in windows]))


def _load_module(path: pathlib.Path, name: str):
    """Imports a Python file of an outside checkout as a module."""
    if not path.is_file():
        raise app.UsageError(f"{path} does not exist; check the checkout path flag.")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _deeplab2_stq(checkout: str, gts, preds) -> Callable[[], float]:
    """DeepLab2's numpy STQ on the sequence, labels as (semantic << 16) + instance."""
    path = pathlib.Path(checkout) / "evaluation/numpy/segmentation_and_tracking_quality.py"
    module = _load_module(path, "deeplab2_numpy_stq")

    def shifted(labels):
        labels = labels.astype(np.int64)
        return ((labels // DIVISOR) << 16) + labels % DIVISOR

    gts, preds = [shifted(g) for g in gts], [shifted(p) for p in preds]

    def run():
        metric = module.STQuality(NUM_CLASSES, list(THINGS), IGNORE, 16, 2**16 * 256)
        for gt, pred in zip(gts, preds, strict=True):
            metric.update_state(gt, pred, "seq")
        return float(metric.result()["STQ"])

    return run


def _coco_frame(labels: np.ndarray, key: str, is_gt: bool, arrays: dict):
    """One frame as VIPSeg's script reads it: an RGB id map (kept in `arrays`) and its JSON.

    Segment id = label + 1 (0 is void), category = label // DIVISOR, ground-truth thing
    segments with instance 0 are crowd.
    """
    ids = np.where(labels // DIVISOR == IGNORE, 0, labels.astype(np.int64) + 1)
    arrays[key] = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    segments = []
    for label, area in zip(*np.unique(labels, return_counts=True), strict=True):
        category = int(label) // DIVISOR
        if category == IGNORE:
            continue
        crowd = is_gt and category in THINGS and int(label) % DIVISOR == 0
        segment = {"id": int(label) + 1, "category_id": category, "iscrowd": int(crowd)}
        segments.append({**segment, "area": int(area)})
    return {"segments_info": segments}


def _vipseg_vpq(checkout: str, gts, preds, windows) -> Callable[[], float]:
    """vpq_compute_single_core of VIPSeg's eval_vpq_vspw.py on the sequence."""
    module = _load_module(pathlib.Path(checkout) / "ClipPanoFCN/eval_vpq_vspw.py", "vipseg_vpq")
    arrays: dict[str, np.ndarray] = {}
    frames = []
    for t, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        gt_json = _coco_frame(gt, f"gt{t}", True, arrays)
        pred_json = _coco_frame(pred, f"pred{t}", False, arrays)
        frames.append((gt_json, pred_json, f"gt{t}", f"pred{t}", None))

    class _InMemoryImages:  # Stands in for PIL.Image: open() returns the stored array.
        open = staticmethod(arrays.__getitem__)

    module.Image = _InMemoryImages
    categories = {c: {"id": c, "isthing": int(c in THINGS)} for c in range(NUM_CLASSES)}

    def run():
        quality = []
        for n in windows:
            stat = module.vpq_compute_single_core(categories, n, frames)
            quality.append(stat.pq_average(categories, isthing=None)[0]["pq"])
        return float(np.mean(quality))

    return run


def _time(run, warmup, repeats):
    for _ in range(warmup):
        run()
    seconds, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        seconds.append(time.perf_counter() - start)
    return seconds, value


def _parse_size(text: str) -> tuple[int, int]:
    parts = [int(part) for part in text.lower().split("x")]
    if len(parts) != 2:
        raise app.UsageError(f"--sizes entries are height x width, got {text!r}.")
    return parts[0], parts[1]


def _cases(gts, preds, windows) -> dict[str, Callable[[], float]]:
    cases = {
        "stq_ours": lambda: _stq_ours(gts, preds),
        "stq_reference": lambda: _stq_reference(gts, preds),
        "vpq_ours": lambda: _vpq_ours(gts, preds, windows),
        "vpq_reference": lambda: _vpq_reference(gts, preds, windows),
    }
    if _DEEPLAB2_DIR.value:
        cases["stq_deeplab2"] = _deeplab2_stq(_DEEPLAB2_DIR.value, gts, preds)
    if _VIPSEG_DIR.value:
        cases["vpq_vipseg"] = _vipseg_vpq(_VIPSEG_DIR.value, gts, preds, windows)
    return cases


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    windows = tuple(int(n) for n in _WINDOWS.value)
    for height, width in (_parse_size(size) for size in _SIZES.value):
        gts, preds = make_sequence(_FRAMES.value, height, width, _OBJECTS.value)
        medians, values = {}, {}
        for case, run in _cases(gts, preds, windows).items():
            seconds, values[case] = _time(run, _WARMUP.value, _REPEATS.value)
            medians[case] = float(np.median(seconds))
            record = {
                "case": case,
                "frame_size": [height, width],
                "frames": _FRAMES.value,
                "window_sizes": list(windows) if case.startswith("vpq") else None,
                "warmup": _WARMUP.value,
                "repeats": _REPEATS.value,
                "min_s": round(min(seconds), 4),
                "median_s": round(medians[case], 4),
                "p90_s": round(float(np.percentile(seconds, 90)), 4),
                "frames_per_s": round(_FRAMES.value / medians[case], 2),
                "value": values[case],
            }
            print(json.dumps(record), flush=True)
        for case in medians:
            metric, _, reference = case.partition("_")
            if reference == "ours":
                continue
            record = {
                "case": f"{metric}_speedup_over_{reference}",
                "frame_size": [height, width],
                "ratio": round(medians[case] / medians[f"{metric}_ours"], 2),
                "abs_difference": abs(values[case] - values[f"{metric}_ours"]),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
