"""Fixtures shared by the TFLite tests: the tiny online model, exported once per session."""

import dataclasses
import pathlib

import pytest
import tf_keras

from deeplab_video.export import tflite_export
from deeplab_video.protos import config_pb2
from tests.export import tflite_fixtures


@dataclasses.dataclass(frozen=True)
class ExportedTFLite:
    """The reference Keras model, its checkpoint and its float32 TFLite export.

    Attributes:
      options: the experiment (tflite_fixtures.options()).
      model: the Keras inference network with the test weights.
      model_dir: a checkpoint of those weights.
      model_path: the float32 .tflite file, frames of tflite_fixtures.SIZE.
    """

    options: config_pb2.ExperimentOptions
    model: tf_keras.Model
    model_dir: str
    model_path: pathlib.Path


@pytest.fixture(scope="session")
def exported_tflite(tmp_path_factory) -> ExportedTFLite:
    opts = tflite_fixtures.options()
    model = tflite_fixtures.reference_model(opts)
    model_dir = tflite_fixtures.save_checkpoint(model, tmp_path_factory.mktemp("model_dir"))
    model_path = tmp_path_factory.mktemp("tflite") / "model.tflite"
    returned = tflite_export.export_tflite(opts, str(model_path), tflite_fixtures.SIZE, model_dir)
    assert returned == str(model_path)
    return ExportedTFLite(opts, model, model_dir, model_path)
