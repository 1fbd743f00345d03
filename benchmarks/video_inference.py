r"""End-to-end video inference speed, stage by stage, on a generated H.264 clip or a given video.

For each case the video is segmented and tracked twice:

1. Staged: clip by clip with a clock around each stage (outputs copied to the host before
   each clock stops), giving ms per frame of
     decode    reading and decoding the frames (OpenCV),
     network   padding the clip and the Keras model,
     merge     panoptic inference (mask-wise merge at input resolution), crop and boxes,
     track     Video-Stitch + memory buffer + relabelling, copied to numpy,
     write     panoptic PNG, overlay video frame and track records of every frame.
   The SavedModel case times `segment_clip` (network + merge) as one stage.
2. End to end: `inference/infer_lib.run_inference` as the CLI runs it (its decoding and
   writing may overlap the model), on --warmup_frames + --frames frames. Its frames/s is
   --frames over the time from the warmup-th prediction to the end of the run (all outputs
   written), so model building and tracing are left out.

Each case prints one JSON record with min and median over --repeats of every figure, and
the share of time outside the network: 1 - network / staged total, and 1 - network / end
to end.

Cases: tiny_720p (configs/synthetic/tiny_near_online.textproto at 720x1280),
resnet50_kitti_t1 / resnet50_kitti_t2 (configs/kitti_step/resnet50_online.textproto /
resnet50.textproto at KITTI-STEP's 375x1242), saved_model_tiny_720p (the tiny config
exported, run through SavedModelVideoRunner). Without a checkpoint the weights are fresh
(seeded); fresh weights put every query on void, so --class_bias is added to the first
thing class's logit, which makes every query a confident thing object (the heaviest merge),
and --mask_scale sharpens the mask logits so that the queries' masks cover regions.

  python benchmarks/video_inference.py --cases=tiny_720p --frames=30 --repeats=3
  python benchmarks/video_inference.py --cases=resnet50_kitti_t1,resnet50_kitti_t2 \
      --resnet50_frames=3 --output_dir=/tmp/bench --compare_with=/tmp/bench_before
"""

import json
import os
import pathlib
import sys
import tempfile
import time

import cv2
import device_info
import numpy as np
import tensorflow as tf
import tf_keras
from absl import app, flags

from deeplab_video import common, config, datasets
from deeplab_video.data import panoptic_png, synthetic, video_io
from deeplab_video.export import export_lib
from deeplab_video.inference import infer_lib
from deeplab_video.model import builder, pretrained
from deeplab_video.post_processing import video_tracker

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests import video_fixtures  # noqa: E402

_REPO = pathlib.Path(__file__).resolve().parents[1]
_TINY = _REPO / "configs" / "synthetic" / "tiny_near_online.textproto"
CASES = {  # name: (config, frame size, exported)
    "tiny_720p": (_TINY, (720, 1280), False),
    "resnet50_kitti_t1": (
        _REPO / "configs/kitti_step/resnet50_online.textproto",
        (375, 1242),
        False,
    ),
    "resnet50_kitti_t2": (_REPO / "configs/kitti_step/resnet50.textproto", (375, 1242), False),
    "saved_model_tiny_720p": (_TINY, (720, 1280), True),
}
STAGES = ("decode", "network", "merge", "track", "write")

_CASES = flags.DEFINE_list("cases", ["tiny_720p"], f"Cases to run, of {list(CASES)}.")
_FRAMES = flags.DEFINE_integer(
    "frames", 30, "Timed frames of the tiny cases (fewer make the end-to-end rate noisy)."
)
_RESNET50_FRAMES = flags.DEFINE_integer("resnet50_frames", 3, "Timed frames of ResNet-50.")
_WARMUP_FRAMES = flags.DEFINE_integer(
    "warmup_frames", 3, "Untimed frames before timing (at least two clips)."
)
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repetitions of each case.")
_VIDEO = flags.DEFINE_string("video", None, "A video to run instead of the generated clip.")
_TINY_CHECKPOINT = flags.DEFINE_string("tiny_checkpoint", None, "Weights of the tiny cases.")
_RESNET50_CHECKPOINT = flags.DEFINE_string("resnet50_checkpoint", None, "ResNet-50 weights.")
_CLASS_BIAS = flags.DEFINE_float(
    "class_bias", 12.0, "Logit bias of the first thing class, for fresh weights."
)
_MASK_SCALE = flags.DEFINE_float("mask_scale", 2000.0, "Mask-logit scale factor of fresh weights.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where outputs go (default: a temp dir).")
_COMPARE_WITH = flags.DEFINE_string(
    "compare_with", None, "The --output_dir of an earlier run: compare its panoptic PNGs."
)


def _video(case: str, num_frames: int, work_dir: str) -> str:
    """The given --video, or a synthetic clip of the case's frame size.

    The clip is an H.264 MP4, or a folder of PNG frames (as KITTI-STEP ships its videos)
    when a side is odd, which H.264's 4:2:0 sampling cannot hold.
    """
    if _VIDEO.value:
        return _VIDEO.value
    _, (height, width), _ = CASES[case]
    odd = height % 2 or width % 2
    path = os.path.join(work_dir, f"{height}x{width}_{num_frames}" + ("" if odd else ".mp4"))
    if not os.path.exists(path):
        sequence = synthetic.generate_sequence(
            np.random.default_rng(0),
            "0000",
            num_frames,
            height,
            width,
            max_objects=6,
            crossing=True,
        )
        if odd:
            os.makedirs(path)
            for index, image in enumerate(sequence.images):
                cv2.imwrite(os.path.join(path, f"{index:06d}.png"), image[..., ::-1])
        else:
            video_fixtures.write_h264(pathlib.Path(path), list(sequence.images))
    return path


def _model_and_checkpoint(case: str, options, work_dir: str) -> tuple[tf_keras.Model, str, str]:
    """The inference model, a checkpoint holding its weights, and how they were made."""
    tf_keras.utils.set_random_seed(0)
    model = builder.build_model(options, inference_only=True)
    checkpoint = _RESNET50_CHECKPOINT.value if "resnet50" in case else _TINY_CHECKPOINT.value
    if checkpoint:
        description = pretrained.describe_model(options.model_options, str(CASES[case][0]))
        pretrained.load_complete(model, checkpoint, description)
        return model, checkpoint, f"checkpoint {checkpoint}"
    head = model.checkpoint_items["prediction_head"]
    (bias,) = [v for v in head.variables if "transformer_class_head" in v.name and "bias" in v.name]
    thing = datasets.get_descriptor(options.eval_dataset_options.dataset).thing_ids[0]
    bias.assign_add(tf.scatter_nd([[thing]], [_CLASS_BIAS.value], bias.shape))
    # Fresh mask logits are nearly equal (initial scale 0.1), so no mask passes the
    # threshold; a larger scale gives every query its own random region.
    (scale,) = [
        v for v in head.variables if "pixel_space_mask_batch_norm" in v.name and "gamma" in v.name
    ]
    scale.assign(scale * _MASK_SCALE.value)
    prefix = tf.train.Checkpoint(**model.checkpoint_items).save(
        os.path.join(work_dir, case, "ckpt")
    )
    return (
        model,
        prefix,
        (
            f"fresh (seed 0), class {thing} logit bias {_CLASS_BIAS.value}, "
            f"mask logits x{_MASK_SCALE.value}"
        ),
    )


class _KerasStages:
    """Network, merge and tracking of the Python runner as separately timed calls."""

    def __init__(self, model, options):
        self._network = tf.function(lambda clip: model(clip, training=False))
        self._outputs: dict[str, tf.Variable] = {}
        embeddings = options.evaluator_options.memory_buffer.embedding_output
        self._output_names = ("mask_logits", "class_logits", embeddings)
        # The runner's own segmenter, fed the network outputs stored in variables, so that
        # `merge` times exactly its post-network part (panoptic inference, crop, boxes).
        self._segmenter = video_tracker.ClipSegmenter(self._stored_outputs, options)
        self._runner = video_tracker.VideoRunner(model, options)
        self._track = tf.function(self._runner.track_clip)
        self._state = None

    def _stored_outputs(self, clip, training=False):
        del clip, training
        return {name: variable.read_value() for name, variable in self._outputs.items()}

    def segment(self, frames: np.ndarray, clock: dict) -> tf.Tensor:
        start = time.perf_counter()
        frames = tf.cast(tf.constant(frames), tf.float32)
        height, width = frames.shape[1:3]
        target_height, target_width = video_tracker.padded_size(height, width)
        padded = tf.pad(
            frames,
            [[0, 0], [0, target_height - height], [0, target_width - width], [0, 0]],
            constant_values=video_tracker.PAD_PIXEL_VALUE,
        )
        outputs = self._network(padded[tf.newaxis])
        outputs = {name: outputs[name] for name in self._output_names}
        _ = outputs["mask_logits"][0, 0, 0, 0].numpy()
        clock["network"] += time.perf_counter() - start
        start = time.perf_counter()
        for name, value in outputs.items():
            if name not in self._outputs:
                self._outputs[name] = tf.Variable(value, trainable=False)
            self._outputs[name].assign(value)
        clip = self._segmenter.segment(frames)
        _ = clip.num_objects.numpy()
        clock["merge"] += time.perf_counter() - start
        return clip

    def track(self, clip, clock: dict) -> np.ndarray:
        start = time.perf_counter()
        if self._state is None:
            self._state = self._runner.initial_state(clip.embeddings.shape[-1])
        self._state, _, panoptic, _ = self._track(self._state, clip)
        panoptic = panoptic.numpy()
        clock["track"] += time.perf_counter() - start
        return panoptic

    def reset(self) -> None:
        self._state = None


class _SavedModelStages:
    """`segment_clip` and `track` of an export as separately timed calls."""

    def __init__(self, export_dir: str):
        loaded = tf.saved_model.load(export_dir)
        self._segment = loaded.signatures["segment_clip"]
        self._initial_state = loaded.signatures["initial_state"]
        self._track_signature = loaded.signatures["track"]
        self._state = None

    def segment(self, frames: np.ndarray, clock: dict) -> dict:
        start = time.perf_counter()
        clip = self._segment(frames=tf.constant(frames[np.newaxis]))
        _ = clip["num_objects"].numpy()
        clock["network+merge"] += time.perf_counter() - start
        return clip

    def track(self, clip: dict, clock: dict) -> np.ndarray:
        start = time.perf_counter()
        if self._state is None:
            self._state = self._initial_state()
        outputs = self._track_signature(**self._state, **clip)
        self._state = {name: outputs[name] for name in self._state}
        panoptic = outputs["panoptic"][0].numpy()
        clock["track"] += time.perf_counter() - start
        return panoptic

    def reset(self) -> None:
        self._state = None


def _staged_run(stages, video: str, clip_length: int, max_frames: int, writer) -> dict:
    """Runs the video clip by clip (VideoRunner's clip rule) and times every stage.

    Returns:
        seconds per stage, and 'frames' and 'objects' (thing objects summed over clips).
    """
    clock = dict.fromkeys(STAGES + ("network+merge",), 0.0)
    stride = common.clip_stride(clip_length)
    frames = iter(video_io.read_frames(video))
    window, first, emitted, objects, exhausted = [], 0, 0, 0, False
    stages.reset()
    while not exhausted:
        start = time.perf_counter()
        while len(window) < clip_length and not exhausted:
            frame = next(frames, None)
            if frame is None or first + len(window) >= max_frames:
                exhausted = True
            else:
                window.append(frame)
        clock["decode"] += time.perf_counter() - start
        if not window or (exhausted and first + len(window) <= emitted):
            break
        real = len(window)
        clip = stages.segment(np.stack(window + [window[-1]] * (clip_length - real)), clock)
        objects += int(np.sum(clip["num_objects"] if isinstance(clip, dict) else clip.num_objects))
        panoptic = stages.track(clip, clock)
        start = time.perf_counter()
        for offset in range(real):
            if first + offset >= emitted:
                writer.add(first + offset, window[offset], panoptic[offset])
                emitted += 1
        clock["write"] += time.perf_counter() - start
        window, first = window[stride:], first + stride
    writer.close()
    return {**clock, "frames": emitted, "objects": objects}


def _end_to_end_seconds(
    video, output_dir, warmup, frames, checkpoint, config_file, export_dir, dataset
):
    """Seconds per frame of run_inference (the CLI's path) after its first `warmup` frames.

    Timed from the moment the warmup-th prediction goes to the writer until the run has
    returned (every output written), so model building and tracing are left out.
    """
    submitted = {}
    infer_lib.run_inference(
        video,
        output_dir,
        config_file=None if export_dir else config_file,
        checkpoint=None if export_dir else checkpoint,
        saved_model=export_dir,
        dataset=dataset,
        max_frames=warmup + frames,
        on_prediction=lambda done: submitted.setdefault(done, time.perf_counter()),
    )
    return (time.perf_counter() - submitted[warmup]) / frames


def _summary(values: list[float], scale: float = 1.0, digits: int = 1) -> dict:
    values = np.asarray(values) * scale
    return {
        "min": round(float(values.min()), digits),
        "median": round(float(np.median(values)), digits),
    }


def _compare_pngs(case_dir: str, other_dir: str) -> dict:
    """How many panoptic PNGs of two runs hold the same panoptic map."""
    same = different = missing = 0
    for path in sorted(pathlib.Path(case_dir, "panoptic").glob("*.png")):
        other = pathlib.Path(other_dir, "panoptic", path.name)
        if not other.exists():
            missing += 1
        elif np.array_equal(panoptic_png.read(path, 1000), panoptic_png.read(other, 1000)):
            same += 1
        else:
            different += 1
    return {"identical": same, "different": different, "missing": missing}


def _same_file(case_dir: str, other_dir: str, name: str) -> bool:
    """Whether two runs wrote the same bytes to the file `name`."""
    paths = [pathlib.Path(folder, name) for folder in (case_dir, other_dir)]
    return all(path.exists() for path in paths) and paths[0].read_bytes() == paths[1].read_bytes()


def _run_case(case: str, work_dir: str, output_dir: str) -> dict:
    config_file, _, exported = CASES[case]
    options = config.load_config(config_file)
    clip_length = max(options.eval_dataset_options.clip_length, 1)
    dataset = options.eval_dataset_options.dataset
    descriptor = datasets.get_descriptor(dataset)
    frames = _RESNET50_FRAMES.value if "resnet50" in case else _FRAMES.value
    # Warm-up covers two clips: the first clip's tracking state has other shapes.
    warmup = max(_WARMUP_FRAMES.value, clip_length + common.clip_stride(clip_length))
    video = _video(case, warmup + frames, work_dir)
    info = video_io.probe(video)
    model, checkpoint, weights = _model_and_checkpoint(case, options, work_dir)
    export_dir = None
    if exported:
        export_dir = os.path.join(work_dir, case, "saved_model")
        if not os.path.exists(export_dir):
            export_lib.export_saved_model(options, export_dir, checkpoint)
        stages = _SavedModelStages(export_dir)
    else:
        stages = _KerasStages(model, options)
    scratch_writer = infer_lib.PredictionWriter(
        os.path.join(work_dir, case, "staged"), descriptor, info.fps
    )
    _staged_run(stages, video, clip_length, warmup, scratch_writer)  # Traces everything.
    staged, end_to_end = [], []
    case_dir = os.path.join(output_dir, case)
    for _ in range(_REPEATS.value):
        writer = infer_lib.PredictionWriter(
            os.path.join(work_dir, case, "staged"), descriptor, info.fps
        )
        staged.append(_staged_run(stages, video, clip_length, warmup + frames, writer))
        end_to_end.append(
            _end_to_end_seconds(
                video, case_dir, warmup, frames, checkpoint, config_file, export_dir, dataset
            )
        )
    num_frames = staged[0]["frames"]
    used = [s for s in STAGES + ("network+merge",) if any(run[s] for run in staged)]
    per_stage = {s: [run[s] / run["frames"] for run in staged] for s in used}
    # The export runs network and merge as one signature: its share is outside both.
    inside = "network" if "network" in per_stage else "network+merge"
    network = per_stage[inside]
    total = [sum(run[s] for s in used) / run["frames"] for run in staged]
    record = {
        "case": case,
        "device": device_info.describe_device(),
        "config": os.path.relpath(config_file, _REPO),
        "frame_size": [info.height, info.width],
        "clip_length": clip_length,
        "weights": weights,
        "staged_frames": num_frames,
        "end_to_end_frames": frames,
        "repeats": _REPEATS.value,
        "objects_per_clip": round(
            staged[0]["objects"] / max(1, -(-num_frames // common.clip_stride(clip_length))), 1
        ),
        "stage_ms_per_frame": {s: _summary(v, 1e3) for s, v in per_stage.items()},
        "staged_ms_per_frame": _summary(total, 1e3),
        "end_to_end_ms_per_frame": _summary(end_to_end, 1e3),
        "end_to_end_frames_per_s": _summary([1.0 / s for s in end_to_end], digits=3),
        f"outside_{inside}_share": {
            "staged": _summary(1.0 - np.asarray(network) / np.asarray(total), digits=3),
            "end_to_end": _summary(1.0 - np.asarray(network) / np.asarray(end_to_end), digits=3),
        },
    }
    if _COMPARE_WITH.value:
        other_dir = os.path.join(_COMPARE_WITH.value, case)
        record["pngs_vs_compare_with"] = _compare_pngs(case_dir, other_dir)
        record["tracks_json_identical_to_compare_with"] = _same_file(
            case_dir, other_dir, "tracks.json"
        )
    return record


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = [case for case in _CASES.value if case not in CASES]
    if unknown:
        raise app.UsageError(f"Unknown cases {unknown}; choose from {list(CASES)}.")
    work_dir = tempfile.mkdtemp(prefix="video_inference_")
    output_dir = _OUTPUT_DIR.value or os.path.join(work_dir, "outputs")
    for case in _CASES.value:
        print(json.dumps(_run_case(case, work_dir, output_dir)), flush=True)


if __name__ == "__main__":
    app.run(main)
