"""The tiny online model the TFLite tests export, its inputs and a PQ of two predictions.

The weights are the untrained network's, with the class head biased towards thing classes
and class and overlap thresholds of 0 (as tests/export/test_export.py does), and the mask
logits sharpened (the final mask norm's scale times MASK_SHARPNESS): fresh weights give
nearly equal logits, so one query would own every pixel, whereas these give ten or so
segments per frame, things among them, for the merge and the tracker to work on.
"""

import pathlib

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab_video import config, datasets
from deeplab_video.data import synthetic
from deeplab_video.evaluation import pq
from deeplab_video.model import builder
from deeplab_video.protos import config_pb2
from tests import conftest

ONLINE = conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto"
NEAR_ONLINE = conftest.CONFIG_DIR / "synthetic" / "tiny_near_online.textproto"
SIZE = (48, 64)  # the exported frame size: padded to 65 x 65 for the network, cropped back
MASK_SHARPNESS = 300.0
DESCRIPTOR = datasets.SYNTHETIC


def keep_every_object(opts: config_pb2.ExperimentOptions) -> config_pb2.ExperimentOptions:
    """Sets thresholds that keep the fresh network's objects; returns `opts`."""
    post_processing = opts.evaluator_options.post_processing
    post_processing.class_threshold_thing = 0.0
    post_processing.class_threshold_stuff = 0.0
    post_processing.mask_threshold = 0.05
    post_processing.overlap_threshold = 0.0
    return opts


def options() -> config_pb2.ExperimentOptions:
    """The tiny online experiment with thresholds that keep the fresh network's objects."""
    return keep_every_object(config.load_config(ONLINE))


def favour_things(model: tf_keras.Model) -> None:
    """Biases the class head towards the thing classes, so that every query is a thing
    object (the untrained network would make stuff or things at random)."""
    head = model.checkpoint_items["prediction_head"]
    (bias,) = [v for v in head.variables if "transformer_class_head" in v.name and "bias" in v.name]
    thing_ids = [[i] for i in DESCRIPTOR.thing_ids]
    bias.assign(tf.tensor_scatter_nd_update(bias, thing_ids, [4.0] * len(thing_ids)))


def reference_model(opts: config_pb2.ExperimentOptions) -> tf_keras.Model:
    """The inference network with the test weights (see the module docstring)."""
    tf_keras.utils.set_random_seed(0)
    model = builder.build_model(opts, inference_only=True)
    favour_things(model)
    head = model.checkpoint_items["prediction_head"]
    (gamma,) = [v for v in head.variables if "pixel_space_mask_batch_norm/gamma" in v.name]
    gamma.assign(gamma * MASK_SHARPNESS)
    return model


def save_checkpoint(model: tf_keras.Model, directory: pathlib.Path) -> str:
    """Writes the model's weights as a checkpoint of ours; returns the model_dir."""
    tf.train.Checkpoint(**model.checkpoint_items).save(str(directory / "ckpt"))
    return str(directory)


def video(num_frames: int, size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 [num_frames, height, width, 3]: a synthetic sequence with three movers."""
    sequence = synthetic.generate_sequence(
        np.random.default_rng(seed), "0000", num_frames, *size, max_objects=3, crossing=False
    )
    return sequence.images


def panoptic_quality(reference: list[np.ndarray], predictions: list[np.ndarray]) -> float:
    """PQ of predictions against reference maps (int32 [height, width] each, in pairs)."""
    metric = pq.PanopticQuality(
        DESCRIPTOR.num_classes,
        DESCRIPTOR.thing_ids,
        DESCRIPTOR.ignore_label,
        DESCRIPTOR.label_divisor,
    )
    for expected, predicted in zip(reference, predictions, strict=True):
        metric.update_state(expected, predicted)
    return metric.result()["PQ"]
