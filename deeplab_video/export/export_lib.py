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
from deeplab_video.model import builder
from deeplab_video.protos import config_pb2

CONFIG_COPY = os.path.join("assets.extra", "experiment.textproto")


def resolve_checkpoint(checkpoint_path: str) -> str:
    """The checkpoint prefix for a checkpoint file prefix or a model_dir (its latest).

    Raises:
      FileNotFoundError: the directory holds no checkpoint, or the prefix does not exist.
    """
    if tf.io.gfile.isdir(checkpoint_path):
        latest = tf.train.latest_checkpoint(checkpoint_path)
        if latest is None:
            raise FileNotFoundError(f"No checkpoint found in directory {checkpoint_path}.")
        return latest
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise FileNotFoundError(
            f"No checkpoint at {checkpoint_path} (expected {checkpoint_path}.index); give a "
            "checkpoint prefix such as model_dir/ckpt-600, or a model_dir."
        )
    return checkpoint_path


def restore_weights(model: tf.Module, checkpoint_path: str) -> str:
    """Restores the model's weights from a training checkpoint.

    Training checkpoints hold `model.checkpoint_items` at their root (plus the optimizer,
    the step and, for the training model, the auxiliary head): everything the inference
    model lacks is skipped (`expect_partial`), but every variable it has must be found.

    Args:
      model: a built Video-kMaX model.
      checkpoint_path: a checkpoint prefix or a model_dir.

    Returns:
      The checkpoint prefix that was restored.

    Raises:
      FileNotFoundError: no checkpoint at checkpoint_path.
      ValueError: the checkpoint lacks some of the model's variables (another
        architecture or config).
    """
    prefix = resolve_checkpoint(checkpoint_path)
    status = tf.train.Checkpoint(**model.checkpoint_items).restore(prefix).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(
            f"Checkpoint {prefix} does not hold all weights of the model this config builds "
            f"(was it trained with another model_options?): {error}"
        ) from error
    logging.info("Restored weights from %s", prefix)
    return prefix


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
      ValueError: the checkpoint does not fit the model, or invalid options.
    """
    model = builder.build_model(opts, inference_only=True)
    if checkpoint_path:
        restore_weights(model, checkpoint_path)
    else:
        logging.warning("No checkpoint given: exporting freshly initialised weights.")
    module = serving_module.VideoServingModule(model, opts)
    tf.saved_model.save(module, output_dir, signatures=module.signatures())
    config_copy = os.path.join(output_dir, CONFIG_COPY)
    tf.io.gfile.makedirs(os.path.dirname(config_copy))
    with tf.io.gfile.GFile(config_copy, "w") as f:
        f.write(text_format.MessageToString(opts))
    logging.info(
        "Exported SavedModel to %s (signatures: %s)", output_dir, ", ".join(module.signatures())
    )
    return output_dir
