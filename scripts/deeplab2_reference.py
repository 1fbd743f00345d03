"""DeepLab2 side of the kMaX-DeepLab parity check: run it with DeepLab2's own Python.

Builds DeepLab2's kMaX-DeepLab from a DeepLab2 checkout and one of its own kMaX configs,
gives every variable random values, saves it as DeepLab2's trainer does
(`tf.train.Checkpoint` of `checkpoint_items` and a global step), and writes its outputs on
one random image. No branch is silenced by a zero or tiny initial value: gammas and
ConvNeXt layer scales are drawn in [0.5, 1.5], or in [0.05, 0.15] for those that start
at zero or 1e-6 (the last of a residual branch). The batch-norm statistics are, by
default, those of the real activations on the image (`--batch_norm_statistics=calibrated`:
one pass that sets each batch norm's moving mean and variance to its input's moments
before normalising), so that the random network stays well conditioned (logits of order
1) and float32 rounding is not amplified; `random` draws them instead.

    python scripts/deeplab2_reference.py --deeplab2 /path/to/deeplab2 \
        --config configs/coco/kmax_deeplab/kmax_meta_r50_os32.textproto \
        --output_dir /tmp/parity/coco_r50 [--size 161,225] [--seed 0]

Outputs in output_dir: `ckpt-1.*` (the checkpoint), `reference.npz` with `image` uint8
[H, W, 3], `class_logits` float32 [N, C + 1], `mask_logits` float32 [h, w, N] (the
pixel-space mask logits at the decoder's finest stride), `layer_class_logits` float32
[layers, N, C + 1] (each decoder layer's predictions), and `variables.json`, the
checkpoint's variable names and shapes. This script imports only TensorFlow (<= 2.15,
Keras 2) and DeepLab2; scripts/deeplab2_parity.py runs it and compares our network.
"""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags
from google.protobuf import text_format

_DEEPLAB2 = flags.DEFINE_string("deeplab2", None, "Path of the DeepLab2 checkout.", required=True)
_CONFIG = flags.DEFINE_string(
    "config", None, "DeepLab2 kMaX config, relative to the checkout.", required=True
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where outputs go.", required=True)
_SIZE = flags.DEFINE_string("size", "161,225", "Image height,width (each 32k+1).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the weights and of the image.")
_BATCH_NORM_STATISTICS = flags.DEFINE_enum(
    "batch_norm_statistics",
    "calibrated",
    ["calibrated", "random"],
    "Moving statistics: those of the activations on the image, or random.",
)

# DeepLab2's proto files (compiled in place as its compile.sh does, when not yet done).
_PROTOS = ("config", "dataset", "evaluator", "model", "trainer")


def _import_deeplab2(checkout: str):
    """Puts the checkout on sys.path (compiling its protos first if needed)."""
    checkout = os.path.abspath(checkout)
    if os.path.basename(checkout) != "deeplab2":
        raise SystemExit(f"error: the DeepLab2 checkout folder must be named deeplab2 ({checkout})")
    parent = os.path.dirname(checkout)
    if not os.path.exists(os.path.join(checkout, "config_pb2.py")):
        protos = [os.path.join("deeplab2", f"{name}.proto") for name in _PROTOS]
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", *protos],
            cwd=parent,
            check=True,
        )
    sys.path.insert(0, parent)


def _random_value(variable: tf.Variable, rng: np.random.Generator) -> np.ndarray:
    """A random value for `variable`, in a range that keeps activations sane."""
    name, shape = variable.name, variable.shape.as_list()
    if "gamma" in name or "layer_scale" in name:
        starts_small = np.abs(variable.numpy()).max() < 0.01  # a residual branch's last
        return rng.uniform(0.05, 0.15, shape) if starts_small else rng.uniform(0.5, 1.5, shape)
    if "moving_variance" in name:
        return rng.uniform(0.5, 1.5, shape)
    if "moving_mean" in name or "beta" in name or "bias" in name:
        return rng.normal(0.0, 0.2, shape)
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape)


def _calibrate_batch_norms(model: tf.keras.Model, inputs: tf.Tensor) -> None:
    """Sets every batch norm's moving statistics to the moments of its input on `inputs`.

    One inference pass in which each batch norm first stores the mean and variance of its
    input (over every axis but its own), then normalises with them, so that the layers
    after it see calibrated activations.
    """
    norm_class = next(
        c
        for layer in model.submodules
        for c in type(layer).__mro__
        if c.__name__ == "BatchNormalizationBase"
    )
    original_call = norm_class.call

    def calibrating_call(self, inputs, training=None, **kwargs):
        del training
        axes = [a for a in range(inputs.shape.rank) if a not in self.axis]
        mean, variance = tf.nn.moments(inputs, axes, keepdims=len(self.axis) > 1)
        self.moving_mean.assign(tf.reshape(mean, self.moving_mean.shape))
        self.moving_variance.assign(tf.reshape(variance, self.moving_variance.shape))
        return original_call(self, inputs, training=False, **kwargs)

    norm_class.call = calibrating_call
    try:
        model(inputs, training=False, post_processing=False)
    finally:
        norm_class.call = original_call


def main(argv: list[str]) -> None:
    del argv
    _import_deeplab2(_DEEPLAB2.value)
    from deeplab2 import common, config_pb2  # noqa: PLC0415 (needs the checkout on sys.path)
    from deeplab2.data import dataset  # noqa: PLC0415
    from deeplab2.model import kmax_deeplab  # noqa: PLC0415

    height, width = (int(v) for v in _SIZE.value.split(","))
    with open(os.path.join(_DEEPLAB2.value, _CONFIG.value), encoding="utf-8") as f:
        config = text_format.Parse(f.read(), config_pb2.ExperimentOptions())
    config.train_dataset_options.crop_size[:] = [height, width]
    # Random weights replace ImageNet ones: no backbone weights file is read.
    config.model_options.backbone.ClearField("pretrained_weights")
    descriptor = dataset.MAP_NAME_TO_DATASET_INFO[config.train_dataset_options.dataset]
    tf.keras.utils.set_random_seed(_SEED.value)
    model = kmax_deeplab.KMaXDeepLab(config, descriptor)
    rng = np.random.default_rng(_SEED.value)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    inputs = tf.constant(image[None], tf.float32)
    model(inputs, training=False, post_processing=False)
    for variable in model.variables:
        variable.assign(_random_value(variable, rng).astype(np.float32))
    if _BATCH_NORM_STATISTICS.value == "calibrated":
        _calibrate_batch_norms(model, inputs)
    outputs = model(inputs, training=False, post_processing=False)
    # The per-layer predictions of the decoder (dropped by DeepLab2's inference path).
    layers = model._forward_step(inputs / 127.5 - 1.0, training=False)[  # noqa: SLF001
        common.PRED_AUXILIARY_OUTPUTS
    ]

    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    global_step = tf.Variable(1, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(global_step=global_step, **model.checkpoint_items)
    prefix = checkpoint.write(os.path.join(_OUTPUT_DIR.value, "ckpt-1"))
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with open(os.path.join(_OUTPUT_DIR.value, "variables.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(shapes.items())), f, indent=0)
    np.savez(
        os.path.join(_OUTPUT_DIR.value, "reference.npz"),
        image=image,
        class_logits=outputs[common.PRED_TRANSFORMER_CLASS_LOGITS_KEY][0].numpy(),
        mask_logits=outputs[common.PRED_PIXEL_SPACE_MASK_LOGITS_KEY][0].numpy(),
        layer_class_logits=np.stack(
            [layer[common.PRED_TRANSFORMER_CLASS_LOGITS_KEY][0].numpy() for layer in layers]
        ),
    )
    print(f"wrote {prefix} ({len(shapes)} checkpoint tensors)")


if __name__ == "__main__":
    app.run(main)
