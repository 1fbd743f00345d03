"""Builds a config's inference network and fills it with a checkpoint's weights."""

import tf_keras
from absl import logging

from deeplab_video.model import builder, pretrained
from deeplab_video.protos import config_pb2


def load_inference_model(
    options: config_pb2.ExperimentOptions,
    checkpoint_path: str | None,
    config_file: str | None = None,
) -> tf_keras.Model:
    """The inference network (`build_model(..., inference_only=True)`) with its weights.

    Args:
        options: the experiment.
        checkpoint_path: a checkpoint of any format `pretrained.load_pretrained` reads (our
            own, DeepLab2's, the official PyTorch files); None or "" keeps the fresh
            initialisation (logged as a warning).
        config_file: where `options` came from, to name the model in errors.

    Returns:
        The built Keras model.

    Raises:
        FileNotFoundError: nothing readable at checkpoint_path.
        pretrained.UnknownCheckpointFormatError: no known checkpoint format.
        pretrained.CheckpointMismatchError: the checkpoint does not fill every variable
            (one error naming the checkpoint, the config and the first differing variables).
    """
    model = builder.build_model(options, inference_only=True)
    if checkpoint_path:
        description = pretrained.describe_model(options.model_options, config_file)
        pretrained.load_complete(model, checkpoint_path, description)
    else:
        logging.warning("No checkpoint: running freshly initialised weights.")
    return model
