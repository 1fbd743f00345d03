"""Tests for deeplab_video.model.tf_checkpoint: finding checkpoints, keys and weights."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model import tf_checkpoint


class _Backbone(tf_keras.layers.Layer):
    def __init__(self):
        super().__init__(name="backbone")
        self._conv = tf_keras.layers.Conv2D(4, 3, name="conv")
        self._norm = tf_keras.layers.BatchNormalization(name="norm")

    def call(self, x):
        return self._norm(self._conv(x))


def _backbone() -> _Backbone:
    backbone = _Backbone()
    backbone(tf.zeros([1, 6, 6, 2]))
    return backbone


def test_keys_are_those_tensorflow_writes(tmp_path):
    items = {"backbone": _backbone()}
    module = tf.Module()
    setattr(module, "odd.name/with slash", tf.Variable(1.0))
    items["extra"] = module
    path = tf.train.Checkpoint(**items).save(str(tmp_path / "ckpt"))
    written = {
        name[: -len(tf_checkpoint.VALUE_SUFFIX)]
        for name, _ in tf.train.list_variables(path)
        if name.endswith(tf_checkpoint.VALUE_SUFFIX) and not name.startswith("save_counter")
    }
    keys = tf_checkpoint.variable_keys(items)
    assert set(keys) == written
    assert "extra/odd..name.Swith slash" in keys
    assert len(keys) == 2 + 4 + 1  # conv, norm (with moving statistics), extra


def test_source_lists_weights_without_training_state(tmp_path):
    backbone = _backbone()
    optimizer = tf_keras.optimizers.legacy.Adam()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(backbone(tf.ones([1, 6, 6, 2]), training=True))
    grads = tape.gradient(loss, backbone.trainable_variables)
    optimizer.apply_gradients(zip(grads, backbone.trainable_variables, strict=True))
    checkpoint = tf.train.Checkpoint(
        encoder=backbone, optimizer=optimizer, global_step=tf.Variable(3, dtype=tf.int64)
    )
    prefix = checkpoint.save(str(tmp_path / "ckpt"))
    stored = [name for name, _ in tf.train.list_variables(prefix)]
    assert any("OPTIMIZER_SLOT" in name for name in stored)  # Adam moments were written
    source = tf_checkpoint.CheckpointSource(str(tmp_path))
    assert source.path == prefix
    assert set(source.shapes) == set(tf_checkpoint.variable_keys({"encoder": backbone}))
    np.testing.assert_array_equal(
        source.read("encoder/_conv/kernel"), backbone._conv.kernel.numpy()
    )


def test_folder_without_state_file_resolves_to_its_highest_step(tmp_path):
    # An extracted DeepLab2 download: ckpt-<step>.index/.data files, no `checkpoint` file.
    variable = tf.Variable([1.0, 2.0])
    for step in (9, 150000, 20):
        tf.train.Checkpoint(v=variable).write(str(tmp_path / f"ckpt-{step}"))
    assert tf_checkpoint.resolve_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-150000")
    assert tf_checkpoint.is_checkpoint(str(tmp_path / "ckpt-9"))


def test_missing_checkpoints_are_specific(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint found in directory"):
        tf_checkpoint.resolve_checkpoint(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ckpt-9\.index"):
        tf_checkpoint.resolve_checkpoint(str(tmp_path / "ckpt-9"))
    assert not tf_checkpoint.is_checkpoint(str(tmp_path))
