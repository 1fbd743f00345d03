"""Exports Video-kMaX with its post-processing and tracking as a TensorFlow SavedModel.

    export_saved_model(opts, "/tmp/export")                         # fresh weights
    export_saved_model(opts, "/tmp/export", "/tmp/model_dir")       # latest checkpoint there

The SavedModel holds the inference network (training-only branches left out) and the
signatures of `serving_module.VideoServingModule`; loading and calling it needs nothing
but TensorFlow. The experiment config is copied to `assets.extra/experiment.textproto`
for reference (TF Serving ignores that folder).
"""

import os

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from deeplab_video.export import serving_module
from deeplab_video.model import builder, pretrained
from deeplab_video.protos import config_pb2

CONFIG_COPY = os.path.join("assets.extra", "experiment.textproto")


def restore_weights(
    model: tf.Module, checkpoint_path: str, model_description: str = "the model"
) -> str:
    """Fills every weight of the model from a checkpoint of any format `pretrained` reads.

    Training checkpoints also hold what the inference model lacks (optimizer, auxiliary
    head): those tensors are left unused; but every variable of the model must be found.

    Args:
      model: a built Video-kMaX model.
      checkpoint_path: a checkpoint prefix or a model_dir (ours), a DeepLab2 kMaX-DeepLab
        checkpoint, or an official PyTorch file.
      model_description: names the model in errors (`pretrained.describe_model`).

    Returns:
      The checkpoint that was read.

    Raises:
      FileNotFoundError: no checkpoint at checkpoint_path.
      pretrained.CheckpointMismatchError: the checkpoint lacks some of the model's
        variables or has them in other shapes (another architecture or config).
    """
    return pretrained.load_complete(model, checkpoint_path, model_description).source


def build_serving_module(
    opts: config_pb2.ExperimentOptions,
    checkpoint_path: str | None = None,
    frame_size: tuple[int, int] | None = None,
) -> serving_module.VideoServingModule:
    """Builds the inference model, restores its weights and wraps it for serving.

    Args:
      opts: the experiment, as `config.load_config` returns it.
      checkpoint_path: checkpoint prefix or model_dir; None keeps freshly initialised
        weights (with a warning).
      frame_size: fixes the signatures' frame size (see serving_module); None: any.

    Raises:
      FileNotFoundError, pretrained.CheckpointMismatchError: see `restore_weights`.
    """
    model = builder.build_model(opts, inference_only=True)
    if checkpoint_path:
        restore_weights(model, checkpoint_path, pretrained.describe_model(opts.model_options))
    else:
        logging.warning("No checkpoint given: exporting freshly initialised weights.")
    return serving_module.VideoServingModule(model, opts, frame_size)


def export_saved_model(
    opts: config_pb2.ExperimentOptions, output_dir: str, checkpoint_path: str | None = None
) -> str:
    """Builds the inference model, restores its weights and writes the SavedModel.

    Args:
      opts: the experiment (model, eval clip_length, post-processing, tracking); as
        `config.load_config` returns it.
      output_dir: where the SavedModel goes (created; an existing export is overwritten).
      checkpoint_path: checkpoint prefix or model_dir; None exports freshly initialised
        weights.

    Returns:
      output_dir.

    Raises:
      FileNotFoundError: checkpoint_path names no checkpoint.
      ValueError: the checkpoint does not fit the model (CheckpointMismatchError), or
        invalid options.
    """
    module = build_serving_module(opts, checkpoint_path)
    tf.saved_model.save(module, output_dir, signatures=module.signatures())
    config_copy = os.path.join(output_dir, CONFIG_COPY)
    tf.io.gfile.makedirs(os.path.dirname(config_copy))
    with tf.io.gfile.GFile(config_copy, "w") as f:
        f.write(text_format.MessageToString(opts))
    logging.info(
        "Exported SavedModel to %s (signatures: %s)", output_dir, ", ".join(module.signatures())
    )
    return output_dir
