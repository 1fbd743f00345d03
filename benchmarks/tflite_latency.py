"""Per-frame latency and size of the TFLite exports against the SavedModel and Keras model.

For each case the online experiment is built with its weights (--checkpoint, or fresh
weights made to find objects: the first thing class's logit biased and the mask logits
sharpened, so that post-processing and tracking have work to do), exported as a
SavedModel and as TFLite models with each quantization (none, float16, dynamic_int8) at
the case's frame size, and a synthetic video is run frame by frame through five engines:
the Keras model (`VideoRunner`), the SavedModel (`SavedModelVideoRunner`) and the three
TFLite models (`TFLiteVideoRunner`, the LiteRT interpreter with --num_threads threads).
A frame's time runs from asking the engine for the frame to its panoptic map on the host
(segmentation, post-processing and tracking); the first --warmup frames are not timed.

One JSON record per case and engine (device, frame size, weights, median and p90 ms per
frame, model bytes on disk, PQ of the engine's maps against the Keras model's on the
timed video), then a table of them.

  python benchmarks/tflite_latency.py
  python benchmarks/tflite_latency.py --checkpoint /path/to/model_dir --iterations 50
"""

import json
import os
import pathlib
import tempfile
import time
from collections.abc import Iterator

import device_info
import numpy as np
import tensorflow as tf
import tf_keras
from absl import app, flags

from deeplab_video import config, datasets
from deeplab_video.data import synthetic
from deeplab_video.evaluation import pq
from deeplab_video.export import export_lib, saved_model_runner, tflite_export, tflite_runner
from deeplab_video.model import builder, pretrained
from deeplab_video.post_processing import video_tracker

_REPO = pathlib.Path(__file__).resolve().parents[1]
CASES = {
    "tiny": (_REPO / "configs" / "synthetic" / "tiny_online.textproto", (96, 128)),
    "kitti_resnet50": (_REPO / "configs" / "kitti_step" / "resnet50_online.textproto", (385, 1249)),
}

_CASES = flags.DEFINE_list("cases", ["tiny"], f"Cases to run, of {sorted(CASES)}.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Weights of the cases' model (default: fresh weights, see the doc)."
)
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed frames per engine.")
_ITERATIONS = flags.DEFINE_integer("iterations", 30, "Timed frames per engine.")
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", os.cpu_count(), "Threads of the TFLite interpreter."
)
_CLASS_BIAS = 12.0  # fresh weights: added to the first thing class's logit
_MASK_SCALE = 2000.0  # fresh weights: factor of the mask logits


def _weights(options, name: str, work_dir: str) -> tuple[tf_keras.Model, str, str]:
    """The inference model, a checkpoint of its weights, and how they were made."""
    tf_keras.utils.set_random_seed(0)
    model = builder.build_model(options, inference_only=True)
    if _CHECKPOINT.value:
        description = pretrained.describe_model(options.model_options, str(CASES[name][0]))
        pretrained.load_complete(model, _CHECKPOINT.value, description)
        return model, _CHECKPOINT.value, f"checkpoint {_CHECKPOINT.value}"
    head = model.checkpoint_items["prediction_head"]
    (bias,) = [v for v in head.variables if "transformer_class_head" in v.name and "bias" in v.name]
    thing = datasets.get_descriptor(options.eval_dataset_options.dataset).thing_ids[0]
    bias.assign_add(tf.scatter_nd([[thing]], [_CLASS_BIAS], bias.shape))
    (scale,) = [v for v in head.variables if "pixel_space_mask_batch_norm/gamma" in v.name]
    scale.assign(scale * _MASK_SCALE)
    prefix = tf.train.Checkpoint(**model.checkpoint_items).save(os.path.join(work_dir, "ckpt"))
    return model, prefix, f"fresh (class {thing} bias {_CLASS_BIAS}, masks x{_MASK_SCALE})"


def _timed(predictions: Iterator) -> tuple[list[float], list[np.ndarray]]:
    """Seconds per yielded frame (until its map is on the host) and the maps."""
    seconds, maps = [], []
    while True:
        start = time.perf_counter()
        prediction = next(predictions, None)
        if prediction is None:
            return seconds, maps
        maps.append(np.asarray(prediction.panoptic))
        seconds.append(time.perf_counter() - start)


def _bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def _pq(descriptor: datasets.DatasetDescriptor, reference, predictions) -> float:
    metric = pq.PanopticQuality(
        descriptor.num_classes,
        descriptor.thing_ids,
        descriptor.ignore_label,
        descriptor.label_divisor,
    )
    for expected, predicted in zip(reference, predictions, strict=True):
        metric.update_state(expected, predicted)
    return round(metric.result()["PQ"], 4)


def _run_case(name: str, work_dir: str) -> list[dict]:
    config_path, (height, width) = CASES[name]
    options = config.load_config(config_path)
    descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
    model, checkpoint, weights = _weights(options, name, work_dir)
    saved_model_dir = os.path.join(work_dir, "saved_model")
    export_lib.export_saved_model(options, saved_model_dir, checkpoint)
    engines = {
        "keras": (video_tracker.VideoRunner(model, options), None),
        "saved_model": (saved_model_runner.SavedModelVideoRunner(saved_model_dir), saved_model_dir),
    }
    for quantization in tflite_export.QUANTIZATIONS:
        path = tflite_export.export_tflite(
            options,
            os.path.join(work_dir, f"{quantization}.tflite"),
            (height, width),
            checkpoint,
            quantization,
        )
        runner = tflite_runner.TFLiteVideoRunner(path, num_threads=_NUM_THREADS.value)
        engines[f"tflite_{quantization}"] = (runner, path)
    num_frames = _WARMUP.value + _ITERATIONS.value
    video = synthetic.generate_sequence(
        np.random.default_rng(0), "0000", num_frames, height, width, max_objects=4, crossing=True
    ).images
    records, reference = [], None
    for engine, (runner, path) in engines.items():
        seconds, maps = _timed(runner.stream(iter(video)))
        timed = maps[_WARMUP.value :]
        reference = timed if reference is None else reference
        ms = np.asarray(seconds[_WARMUP.value :]) * 1e3
        records.append(
            {
                "benchmark": "tflite_latency",
                "case": name,
                "engine": engine,
                "device": device_info.describe_device(),
                "tensorflow": tf.__version__,
                "frame_size": [height, width],
                "weights": weights,
                "warmup": _WARMUP.value,
                "iterations": _ITERATIONS.value,
                "ms_per_frame": {
                    "median": round(float(np.median(ms)), 2),
                    "p90": round(float(np.percentile(ms, 90)), 2),
                },
                "bytes": _bytes(path) if path else 4 * model.count_params(),
                "segments_per_frame": round(float(np.mean([len(np.unique(m)) for m in timed])), 1),
                "pq_vs_keras": _pq(descriptor, reference, timed),
            }
        )
    return records


def _table(records: list[dict]) -> str:
    lines = [
        "| case | engine | median ms/frame | p90 ms/frame | size (MB) | PQ vs Keras |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['case']} | {r['engine']} | {r['ms_per_frame']['median']:.1f} | "
            f"{r['ms_per_frame']['p90']:.1f} | {r['bytes'] / 2**20:.2f} | {r['pq_vs_keras']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(_CASES.value) - set(CASES))
    if unknown:
        raise app.UsageError(f"unknown cases {unknown}; choose from {sorted(CASES)}")
    if _WARMUP.value < 0 or _ITERATIONS.value < 1 or _NUM_THREADS.value < 1:
        raise app.UsageError("--warmup must be >= 0, --iterations and --num_threads >= 1")
    records = []
    for name in _CASES.value:
        with tempfile.TemporaryDirectory() as work_dir:
            for record in _run_case(name, work_dir):
                print(json.dumps(record), flush=True)
                records.append(record)
    print(_table(records))
    print("(Keras size: its float32 weights; SavedModel: the export folder.)")


if __name__ == "__main__":
    app.run(main)
