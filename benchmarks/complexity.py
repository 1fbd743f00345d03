"""Model complexity of Video-kMaX in the layout of the paper's Table 3: params, FLOPs, FPS.

For each backbone and case (KITTI-STEP 375 x 1242 frames padded to 385 x 1249, VIPSeg
720 x 1280 padded to 737 x 1281, online T=1 and near-online T=2) the inference network
(`build_model(opts, inference_only=True)`, the repository's configs) is measured with batch
size 1:
- params: trainable weights (the paper's convention) and all weights (with batch-norm
  moving statistics, DeepLab2's `count_params()`);
- FLOPs: the TF profiler's float operations (`tf.compat.v1.profiler`, float_operation
  option) on a frozen graph of the forward pass; it counts a multiply-add as two FLOPs and
  also counts element-wise operations, but it has no statistics for `Einsum`, so the
  einsums' 2 * MACs are added from their static shapes. GMACs are the multiply-accumulates
  of convolutions, matrix products and einsums alone (one per multiply-add), the
  convention of fvcore / detectron2, which the paper's PyTorch code base uses. Both are
  counted at the frame size and at the padded size: the paper's "FLOPs" are GMACs at the
  frame size (ResNet-50, KITTI-STEP, T=1: 82.9 GMACs here, 83G in the paper);
- FPS: frames per second (T frames per clip) of the forward pass on padded frames with
  outputs copied to the host, averaged over --runs runs of --iterations clips after
  --warmup clips, and the worst run.
Every case prints one JSON record; a table with the paper's figures alongside follows.

  python benchmarks/complexity.py                              # all, on the local device
  python benchmarks/complexity.py --backbones=resnet50 --cases=kitti_t1 --iterations=1
  python benchmarks/complexity.py --xla --mixed_precision      # GPU timing
"""

import json
import os
import time

import device_info
import numpy as np
import tensorflow as tf
import tf_keras
from absl import app, flags
from tensorflow.python.framework import convert_to_constants

from deeplab_video import config
from deeplab_video.model import builder

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Config file of each backbone under configs/<dataset>/.
_CONFIG_NAMES = {
    "resnet50": "resnet50",
    "axial_resnet50": "axial_r50",
    "convnext_large": "convnext_l",
}
# Case -> (dataset config folder, frame size, clip length T); the padded size is the eval
# crop of the config.
_CASES = {
    "kitti_t1": ("kitti_step", "375x1242", 1),
    "kitti_t2": ("kitti_step", "375x1242", 2),
    "vipseg_t1": ("vipseg", "720x1280", 1),
    "vipseg_t2": ("vipseg", "720x1280", 2),
}
# Table 3 of the supplementary: (params M, FLOPs G, FPS on a V100) per backbone and case.
_PAPER = {
    "resnet50": {"kitti_t1": (56.4, 83, 41.2), "kitti_t2": (56.4, 167, 23.4),
                 "vipseg_t1": (56.4, 162, 24.4), "vipseg_t2": (56.4, 324, 13.6)},
    "axial_resnet50": {"kitti_t1": (74.2, 118, 31.0), "kitti_t2": (74.2, 236, 17.2),
                       "vipseg_t1": (74.2, 231, 18.2), "vipseg_t2": (74.2, 461, 9.9)},
    "convnext_large": {"kitti_t1": (231.6, 370, 12.9), "kitti_t2": (231.6, 740, 6.9),
                       "vipseg_t1": (231.6, 715, 7.0), "vipseg_t2": (231.6, 1431, 3.7)},
}  # fmt: skip

# Operation types whose multiply-accumulates are counted (and BatchMatMul*).
_MAC_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "Einsum")

_BACKBONES = flags.DEFINE_list("backbones", list(_CONFIG_NAMES), "Backbones to measure.")
_CASE_NAMES = flags.DEFINE_list("cases", list(_CASES), f"Cases among {', '.join(_CASES)}.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs per case (0: no timing).")
_ITERATIONS = flags.DEFINE_integer("iterations", 0, "Clips per run (0: 20 on GPU, 2 on CPU).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed clips before the runs.")
_XLA = flags.DEFINE_bool("xla", False, "Compile the forward pass with XLA.")
_MIXED = flags.DEFINE_bool("mixed_precision", False, "Use the mixed_float16 policy (GPU).")
_FLOPS = flags.DEFINE_bool("flops", True, "Count FLOPs (profiles a frozen graph).")


def _macs(op: tf.Operation) -> int | None:
    """Multiply-accumulates of a convolution, matrix product or einsum (None: unknown)."""
    if op.type not in _MAC_OPS and not op.type.startswith("BatchMatMul"):
        return 0
    shapes = [tensor.shape for tensor in op.inputs] + [op.outputs[0].shape]
    if not all(shape.is_fully_defined() for shape in shapes):
        return None
    out = shapes[-1].as_list()
    if op.type in ("Conv2D", "DepthwiseConv2dNative"):
        kernel = shapes[1].as_list()
        per_output = kernel[0] * kernel[1] * (kernel[2] if op.type == "Conv2D" else 1)
        return int(np.prod(out)) * per_output
    if op.type == "MatMul":
        a = shapes[0].as_list()
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return int(np.prod(out)) * inner
    if op.type == "Einsum":
        inputs, _ = op.get_attr("equation").decode().split("->")
        sizes = {}
        for labels, shape in zip(inputs.split(","), shapes, strict=False):
            sizes.update(zip(labels, shape.as_list(), strict=True))
        return int(np.prod(list(sizes.values())))
    a = shapes[0].as_list()  # BatchMatMul, BatchMatMulV2, BatchMatMulV3.
    inner = a[-2] if op.get_attr("adj_x") else a[-1]
    return int(np.prod(out)) * inner


def count_flops(model: tf_keras.Model, clip_shape: list[int]) -> dict[str, float]:
    """FLOPs (TF profiler + einsums) and MACs of one forward pass on a clip of clip_shape."""
    function = tf.function(lambda clip: model(clip, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(clip_shape, tf.float32))
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    macs, einsum_macs, unknown = 0, 0, []
    for op in graph.get_operations():
        count = _macs(op)
        if count is None:
            unknown.append(op.name)
            continue
        macs += count
        einsum_macs += count if op.type == "Einsum" else 0
    return {
        "gflops": (profile.total_float_ops + 2 * einsum_macs) / 1e9,
        "gmacs": macs / 1e9,
        "ops_with_unknown_shape": len(unknown),
    }


def measure_fps(model, clip_shape, runs, iterations, warmup) -> tuple[float, float]:
    """(mean, worst) frames per second over `runs` runs of `iterations` clips."""
    forward = tf.function(lambda clip: model(clip, training=False), jit_compile=_XLA.value)
    clip = tf.random.uniform(clip_shape, 0.0, 255.0)
    for _ in range(warmup):
        tf.nest.map_structure(lambda x: x.numpy(), forward(clip))
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iterations):
            tf.nest.map_structure(lambda x: x.numpy(), forward(clip))
        rates.append(iterations * clip_shape[1] / (time.perf_counter() - start))
    return float(np.mean(rates)), float(np.min(rates))


def _row(record: dict) -> str:
    paper_params, paper_flops, paper_fps = _PAPER[record["backbone"]][record["case"]]
    fps = record.get("fps_mean")
    timing = f"{fps:6.1f} {record['fps_worst']:6.1f}" if fps is not None else "     -      -"
    flops = "      -       -       -"
    if "gmacs_frame" in record:
        flops = (
            f"{record['gmacs_frame']:7.1f} {record['gmacs_padded']:7.1f} "
            f"{record['gflops_frame']:7.1f}"
        )
    return (
        f"{record['backbone']:15s} {record['frame_size']:>9s} T={record['num_frames']} "
        f"{record['params_trainable'] / 1e6:7.1f} ({paper_params:6.1f}) "
        f"{flops} ({paper_flops:5.0f}) {timing} ({paper_fps:5.1f})"
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_CASE_NAMES.value) - set(_CASES)) + sorted(
        set(_BACKBONES.value) - set(_CONFIG_NAMES)
    )
    if unknown:
        raise app.UsageError(f"unknown cases or backbones: {unknown}")
    if _MIXED.value:
        tf_keras.mixed_precision.set_global_policy("mixed_float16")
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    iterations = _ITERATIONS.value or (20 if on_gpu else 2)
    records = []
    for backbone in _BACKBONES.value:
        for dataset in dict.fromkeys(_CASES[case][0] for case in _CASE_NAMES.value):
            path = os.path.join(_REPO, "configs", dataset, f"{_CONFIG_NAMES[backbone]}.textproto")
            options = config.load_config(path)
            model = builder.build_model(options, inference_only=True)
            height, width = options.eval_dataset_options.crop_size
            for case in _CASE_NAMES.value:
                case_dataset, frame_size, num_frames = _CASES[case]
                if case_dataset != dataset:
                    continue
                clip_shape = [1, num_frames, height, width, 3]
                record = {
                    "backbone": backbone,
                    "case": case,
                    "device": device_info.describe_device(),
                    "frame_size": frame_size,
                    "padded_size": f"{height}x{width}",
                    "num_frames": num_frames,
                    "num_classes": options.model_options.num_classes,
                    "params_trainable": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
                    "params_all": model.count_params(),
                    "xla": _XLA.value,
                    "mixed_precision": _MIXED.value,
                }
                if _FLOPS.value:
                    frame_height, frame_width = (int(n) for n in frame_size.split("x"))
                    frame_shape = [1, num_frames, frame_height, frame_width, 3]
                    for size, shape in (("frame", frame_shape), ("padded", clip_shape)):
                        counts = count_flops(model, shape)
                        record.update({f"{key}_{size}": value for key, value in counts.items()})
                if _RUNS.value > 0:
                    mean, worst = measure_fps(
                        model, clip_shape, _RUNS.value, iterations, _WARMUP.value
                    )
                    record.update(
                        fps_mean=mean,
                        fps_worst=worst,
                        runs=_RUNS.value,
                        iterations=iterations,
                        warmup=_WARMUP.value,
                    )
                print(json.dumps(record), flush=True)
                records.append(record)
            del model
            tf_keras.backend.clear_session()
    print(
        "\nbackbone        frame     T   params (paper)   GMACs  padded  GFLOPs (paper)"
        "    FPS  worst (paper, V100)"
    )
    for record in records:
        print(_row(record))


if __name__ == "__main__":
    app.run(main)
