"""Tests of load_inference_model: the config's inference network with a checkpoint's weights."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import config
from deeplab_video.inference import model_loading
from deeplab_video.model import builder, pretrained
from tests import conftest

CONFIG = conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto"


def test_fills_every_weight_from_a_checkpoint_of_ours(tmp_path):
    options = config.load_config(CONFIG)
    source = builder.build_model(options, inference_only=True)
    for weight in source.weights:
        weight.assign(tf.random.normal(weight.shape, seed=1))
    path = tf.train.Checkpoint(**source.checkpoint_items).save(str(tmp_path / "ckpt"))
    model = model_loading.load_inference_model(options, path, str(CONFIG))
    assert not model.checkpoint_items.keys() - source.checkpoint_items.keys()
    for a, b in zip(model.weights, source.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_without_a_checkpoint_it_warns_and_keeps_the_initialisation(caplog):
    options = config.load_config(CONFIG)
    model = model_loading.load_inference_model(options, None)
    assert model.count_params() > 0
    assert "freshly initialised" in caplog.text


def test_a_checkpoint_of_another_config_is_one_error_naming_both(tmp_path):
    options = config.load_config(CONFIG)
    path = tf.train.Checkpoint(
        **builder.build_model(options, inference_only=True).checkpoint_items
    ).save(str(tmp_path / "ckpt"))
    options.model_options.num_classes += 1
    with pytest.raises(pretrained.CheckpointMismatchError) as error:
        model_loading.load_inference_model(options, path, "other.textproto")
    assert "other.textproto" in str(error.value) and "ckpt" in str(error.value)
