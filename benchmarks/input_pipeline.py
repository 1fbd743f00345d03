"""Times the clip input pipeline (deeplab_video.data.pipeline) on the synthetic dataset.

Generates the default synthetic dataset in a temporary directory (or reads --data_dir,
generating it there if missing), then, for each clip length and mode, builds
`build_clip_dataset` at the default crop (97 x 129), skips --warmup batches and times
--iterations batches (the eval split is repeated when it holds fewer). Each case prints one
JSON line: device, T, batch, mode, crop, warm-up and timed batches, clips per second, and the
median and p90 time per batch in milliseconds. Not part of pytest.

  python benchmarks/input_pipeline.py --iterations=50
"""

import json
import os
import tempfile
import time

import device_info
import numpy as np
import tensorflow as tf
from absl import app, flags

from deeplab_video import common
from deeplab_video.data import pipeline, synthetic
from deeplab_video.protos import dataset_pb2

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Synthetic dataset directory (default: a fresh temporary one)."
)
_CLIP_LENGTHS = flags.DEFINE_list("clip_lengths", ["1", "2"], "Clip lengths T to time.")
_MODES = flags.DEFINE_list("modes", ["train", "eval"], "Pipeline modes to time.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Clips per batch (the synthetic configs use 4).")
_CROP = flags.DEFINE_list("crop_size", ["97", "129"], "Crop [height, width].")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed batches before timing.")
_ITERATIONS = flags.DEFINE_integer("iterations", 50, "Timed batches per case.")


def _options(data_dir: str, mode: str, clip_length: int) -> dataset_pb2.DatasetOptions:
    split = "train" if mode == "train" else "val"
    options = dataset_pb2.DatasetOptions(
        dataset="synthetic",
        file_pattern=[os.path.join(data_dir, f"{split}-*.tfrecord")],
        batch_size=_BATCH.value,
        crop_size=[int(side) for side in _CROP.value],
        clip_length=clip_length,
    )
    augment = options.augmentations
    augment.min_scale_factor, augment.max_scale_factor = 0.75, 1.25
    augment.scale_factor_step_size = 0.1
    return options


def _time_case(data_dir: str, mode: str, clip_length: int) -> dict:
    options = _options(data_dir, mode, clip_length)
    dataset = pipeline.build_clip_dataset(options, is_training=mode == "train")
    iterator = iter(dataset.repeat())
    for _ in range(_WARMUP.value):
        next(iterator)[common.IMAGE].numpy()
    seconds, clips = [], 0
    for _ in range(_ITERATIONS.value):
        start = time.perf_counter()
        element = next(iterator)
        clips += element[common.IMAGE].numpy().shape[0]
        seconds.append(time.perf_counter() - start)
    return {
        "device": device_info.describe_device(),
        "T": clip_length,
        "batch": options.batch_size,
        "mode": mode,
        "crop": list(options.crop_size),
        "warmup_batches": _WARMUP.value,
        "iterations": _ITERATIONS.value,
        "clips_per_second": round(clips / sum(seconds), 1),
        "median_ms_per_batch": round(1000 * float(np.median(seconds)), 2),
        "p90_ms_per_batch": round(1000 * float(np.percentile(seconds, 90)), 2),
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = _DATA_DIR.value or os.path.join(scratch, "synthetic")
        start = time.perf_counter()
        synthetic.ensure_synthetic_dataset(data_dir)
        generation = time.perf_counter() - start
        print(json.dumps({"case": "dataset", "path": data_dir, "seconds": round(generation, 2)}))
        for mode in _MODES.value:
            for clip_length in (int(t) for t in _CLIP_LENGTHS.value):
                print(json.dumps(_time_case(data_dir, mode, clip_length)), flush=True)


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    app.run(main)
