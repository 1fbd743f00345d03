"""Tests for deeplab_video.trainer.checkpoints: checkpoint keys and partial restoring."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.trainer import checkpoints


class _Backbone(tf_keras.layers.Layer):
    def __init__(self):
        super().__init__(name="backbone")
        self._conv = tf_keras.layers.Conv2D(4, 3, name="conv")
        self._norm = tf_keras.layers.BatchNormalization(name="norm")

    def call(self, x):
        return self._norm(self._conv(x))


class _Head(tf_keras.layers.Layer):
    def __init__(self, num_classes: int):
        super().__init__(name="head")
        self._hidden = tf_keras.layers.Dense(5, name="hidden")
        self._classes = tf_keras.layers.Dense(num_classes, name="classes")

    def call(self, x):
        return self._classes(self._hidden(tf.reduce_mean(x, axis=[1, 2])))


def _items(num_classes: int = 3, seed: int = 0) -> dict[str, tf_keras.layers.Layer]:
    tf_keras.utils.set_random_seed(seed)
    backbone, head = _Backbone(), _Head(num_classes)
    head(backbone(tf.zeros([1, 6, 6, 2])))
    return {"backbone": backbone, "head": head}


def _save(items, directory) -> str:
    return tf.train.Checkpoint(**items).save(str(directory / "ckpt"))


def test_keys_are_those_tensorflow_writes(tmp_path):
    items = _items()
    module = tf.Module()
    setattr(module, "odd.name/with slash", tf.Variable(1.0))
    items["extra"] = module
    path = _save(items, tmp_path)
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    written = {
        name[: -len(suffix)]
        for name, _ in tf.train.list_variables(path)
        if name.endswith(suffix) and not name.startswith("save_counter")
    }
    keys = checkpoints.variable_keys(items)
    assert set(keys) == written
    assert "extra/odd..name.Swith slash" in keys
    assert len(keys) == 2 + 4 + 4 + 1  # conv, norm (with moving stats), 2 dense, extra


def test_restore_all_skips_other_shapes(tmp_path):
    source = _items(num_classes=3, seed=1)
    path = _save(source, tmp_path)
    target = _items(num_classes=7, seed=2)
    fresh_kernel = target["head"]._classes.kernel.numpy()
    report = checkpoints.restore_partially(path, target, "all")
    assert set(report.mismatched) == {
        ("head/_classes/kernel", (5, 7), (5, 3)),
        ("head/_classes/bias", (7,), (3,)),
    }
    assert report.missing == ()
    assert "head/_hidden/kernel" in report.restored
    assert "backbone/_norm/moving_mean" in report.restored
    for name in ("backbone", "head"):
        for a, b in zip(source[name].weights, target[name].weights, strict=True):
            if a.shape == b.shape:
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    np.testing.assert_array_equal(target["head"]._classes.kernel.numpy(), fresh_kernel)


def test_restore_backbone_only(tmp_path):
    source = _items(seed=1)
    _save(source, tmp_path)  # restored below from the directory (latest checkpoint)
    target = _items(seed=2)
    before = [v.numpy() for v in target["head"].weights]
    report = checkpoints.restore_partially(str(tmp_path), target, "backbone")
    assert all(key.startswith("backbone/") for key in report.restored)
    assert len(report.restored) == len(target["backbone"].weights)
    for a, b in zip(source["backbone"].weights, target["backbone"].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for old, v in zip(before, target["head"].weights, strict=True):
        np.testing.assert_array_equal(old, v.numpy())


def test_missing_variables_are_reported(tmp_path):
    path = _save({"backbone": _items()["backbone"]}, tmp_path)
    report = checkpoints.restore_partially(path, _items(), "all")
    assert set(report.missing) == {
        "head/_hidden/kernel",
        "head/_hidden/bias",
        "head/_classes/kernel",
        "head/_classes/bias",
    }


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="initial_checkpoint"):
        checkpoints.restore_partially(str(tmp_path / "none"), _items(), "all")
    with pytest.raises(ValueError, match="unknown restore_mode"):
        checkpoints.restore_partially(str(tmp_path), _items(), "heads")


def test_deeplab2_encoder_item_initialises_the_backbone(tmp_path):
    source = _items(seed=1)
    # A DeepLab2 kMaX-DeepLab checkpoint names the backbone item "encoder".
    path = _save({"encoder": source["backbone"], "head": source["head"]}, tmp_path)
    target = _items(seed=2)
    report = checkpoints.restore_partially(path, target, "backbone")
    assert len(report.restored) == len(target["backbone"].weights)
    assert report.missing == ()
    for a, b in zip(source["backbone"].weights, target["backbone"].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
