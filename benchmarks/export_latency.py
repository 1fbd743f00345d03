"""Times the SavedModel export and its serving signatures per clip.

For each case the experiment is exported with fresh weights (the export time), the
SavedModel's size on disk is summed, the export is loaded in this process (the load
time), and a synthetic video is run clip by clip through the loaded signatures:
`segment_clip` on every clip, then `track` on the segmented clips with the state carried
from call to call, as a serving client would. Outputs are copied to the host before each
clock stops; the first --warmup clips of each signature are not timed. One JSON record per
case: device, config, frame size, T, export seconds, SavedModel bytes, load seconds,
warm-up and timed clips, median and p90 ms per clip of both signatures, and the mean
number of objects per clip (what `track` had to associate: fresh weights at the configs'
thresholds usually find none, so `track` then times stitching and memory bookkeeping only).

Cases: "tiny" (configs/synthetic/tiny_near_online.textproto at 97 x 129) and
"kitti_resnet50" (configs/kitti_step/resnet50.textproto at KITTI-STEP's padded 385 x 1249).

  python benchmarks/export_latency.py --cases=tiny
  python benchmarks/export_latency.py --cases=kitti_resnet50 --iterations=3 --warmup=1
"""

import json
import os
import pathlib
import tempfile
import time

import device_info
import numpy as np
import tensorflow as tf
from absl import app, flags

from deeplab_video import common, config
from deeplab_video.data import synthetic
from deeplab_video.export import export_lib

_REPO = pathlib.Path(__file__).resolve().parents[1]
CASES = {
    "tiny": (_REPO / "configs" / "synthetic" / "tiny_near_online.textproto", (97, 129)),
    "kitti_resnet50": (_REPO / "configs" / "kitti_step" / "resnet50.textproto", (385, 1249)),
}

_CASES = flags.DEFINE_list("cases", ["tiny"], f"Cases to run, of {sorted(CASES)}.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed clips per signature.")
_ITERATIONS = flags.DEFINE_integer("iterations", 20, "Timed clips per signature.")


def _directory_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def _stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"median": round(float(np.median(ms)), 2), "p90": round(float(np.percentile(ms, 90)), 2)}


def _run_case(name: str, export_root: str) -> dict:
    config_path, (height, width) = CASES[name]
    options = config.load_config(config_path)
    clip_length = max(options.eval_dataset_options.clip_length, 1)
    stride = common.clip_stride(clip_length)
    export_dir = os.path.join(export_root, name)

    start = time.perf_counter()
    export_lib.export_saved_model(options, export_dir)
    export_seconds = time.perf_counter() - start
    start = time.perf_counter()
    loaded = tf.saved_model.load(export_dir)
    load_seconds = time.perf_counter() - start
    segment, track = loaded.signatures["segment_clip"], loaded.signatures["track"]

    num_clips = _WARMUP.value + _ITERATIONS.value
    num_frames = (num_clips - 1) * stride + clip_length
    video = synthetic.generate_sequence(
        np.random.default_rng(0), "0000", num_frames, height, width, max_objects=4, crossing=True
    ).images
    segment_seconds, clips = [], []
    for index in range(num_clips):
        frames = tf.constant(video[index * stride : index * stride + clip_length][np.newaxis])
        start = time.perf_counter()
        outputs = {key: value.numpy() for key, value in segment(frames=frames).items()}
        segment_seconds.append(time.perf_counter() - start)
        clips.append({key: tf.constant(value) for key, value in outputs.items()})

    track_seconds = []
    state = loaded.signatures["initial_state"]()
    for clip in clips:
        start = time.perf_counter()
        outputs = {key: value.numpy() for key, value in track(**state, **clip).items()}
        track_seconds.append(time.perf_counter() - start)
        state = {key: tf.constant(outputs[key]) for key in state}

    warmup = _WARMUP.value
    return {
        "benchmark": "export_latency",
        "case": name,
        "config": str(config_path.relative_to(_REPO)),
        "device": device_info.describe_device(),
        "tensorflow": tf.__version__,
        "frame_size": [height, width],
        "clip_length": clip_length,
        "export_seconds": round(export_seconds, 2),
        "saved_model_bytes": _directory_bytes(export_dir),
        "load_seconds": round(load_seconds, 2),
        "warmup": warmup,
        "iterations": _ITERATIONS.value,
        "segment_clip_ms": _stats_ms(segment_seconds[warmup:]),
        "track_ms": _stats_ms(track_seconds[warmup:]),
        "objects_per_clip": round(
            float(np.mean([int(clip["num_objects"][0]) for clip in clips])), 2
        ),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(_CASES.value) - set(CASES))
    if unknown:
        raise app.UsageError(f"unknown cases {unknown}; choose from {sorted(CASES)}")
    if _WARMUP.value < 0 or _ITERATIONS.value < 1:
        raise app.UsageError("--warmup must be >= 0 and --iterations >= 1")
    with tempfile.TemporaryDirectory() as export_root:
        for name in _CASES.value:
            print(json.dumps(_run_case(name, export_root)), flush=True)


if __name__ == "__main__":
    app.run(main)
