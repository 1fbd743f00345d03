"""DeepLab2 kMaX-DeepLab checkpoints for tests, and reduced networks of the coco/cityscapes configs.

A checkpoint is written with TensorFlow's SaveV2 under DeepLab2's keys (its object paths
plus `/.ATTRIBUTES/VARIABLE_VALUE`), which is all `pretrained` reads of a checkpoint.
"""

import numpy as np
import tensorflow as tf

from deeplab_video import config
from deeplab_video.model import deeplab2_mapping, tf_checkpoint
from deeplab_video.protos import config_pb2
from tests import conftest


def write_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> str:
    """Writes float32 `tensors` under DeepLab2 checkpoint keys (no suffix); returns prefix."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=[name + tf_checkpoint.VALUE_SUFFIX for name in names],
        shape_and_slices=[""] * len(names),
        tensors=[np.asarray(tensors[name], np.float32) for name in names],
    )
    return prefix


def random_tensors(shapes: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 tensors of the given {name: shape}."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def checkpoint_of(model, prefix: str) -> dict[str, np.ndarray]:
    """Writes `model`'s weights under DeepLab2's names (in our layouts, which the loader
    also accepts); returns {our key: value}. The model's classes must be in DeepLab2's
    order for its width (true of COCO)."""
    variables = tf_checkpoint.variable_keys(model.checkpoint_items)
    shapes = {key: tuple(v.shape.as_list()) for key, v in variables.items()}
    width = shapes["prediction_head/_transformer_class_head/_conv/bias"]
    assignments = deeplab2_mapping.assign(shapes, {"transformer_class_head/_conv/bias": width})
    write_checkpoint(
        prefix, {assignments[key].source_key: v.numpy() for key, v in variables.items()}
    )
    return {key: v.numpy() for key, v in variables.items()}


def reduced_options(dataset: str) -> config_pb2.ExperimentOptions:
    """configs/<dataset>/kmax_resnet50 with the tiny synthetic model's widths and depths."""
    options = config.load_config(conftest.CONFIG_DIR / dataset / "kmax_resnet50.textproto")
    tiny = config.load_config(conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto")
    model = options.model_options
    num_classes, stages = model.num_classes, len(model.pixel_decoder.channels)
    model.CopyFrom(tiny.model_options)
    model.num_classes = num_classes
    if stages == 5:  # Cityscapes: the stem stage too.
        model.pixel_decoder.num_blocks.append(1)
        model.pixel_decoder.block_types.append("bottleneck")
        model.pixel_decoder.channels.append(8)
    return options
