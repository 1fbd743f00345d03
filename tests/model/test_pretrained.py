"""Tests for deeplab_video.model.pretrained: format detection, the report and its errors.

Toy models with the layout of ours (checkpoint items holding layers) keep these fast;
tests/model/test_deeplab2_mapping.py checks the DeepLab2 table on the real network.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model import pretrained
from deeplab_video.protos import model_pb2


class _Head(tf_keras.layers.Layer):
    """Named like our prediction head: a hidden layer and a class layer."""

    def __init__(self, num_classes: int):
        super().__init__(name="head")
        self._hidden = tf_keras.layers.Dense(5, name="hidden")
        self._transformer_class_head = tf_keras.layers.Dense(num_classes, name="classes")

    def call(self, x):
        return self._transformer_class_head(self._hidden(x))


class _Model:
    """Anything with `checkpoint_items` can be loaded."""

    def __init__(self, num_classes: int = 3, seed: int = 0):
        tf_keras.utils.set_random_seed(seed)
        self.backbone = tf_keras.layers.Dense(4, name="backbone")
        self.head = _Head(num_classes)
        self.head(self.backbone(tf.zeros([1, 2])))

    @property
    def checkpoint_items(self):
        return {"backbone": self.backbone, "prediction_head": self.head}


def _save(items, directory) -> str:
    return tf.train.Checkpoint(**items).save(str(directory / "ckpt"))


def _assert_same_weights(a, b):
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.name)


def test_our_checkpoint_fills_every_variable(tmp_path):
    source, target = _Model(seed=1), _Model(seed=2)
    _save(source.checkpoint_items, tmp_path)
    report = pretrained.load_pretrained(target, str(tmp_path))  # a folder: its latest
    assert report.source_format == "deeplab_video"
    assert report.source == str(tmp_path / "ckpt-1")
    assert len(report.restored) == 6
    assert report.missing == report.mismatched == report.unused == ()
    _assert_same_weights(source.backbone, target.backbone)
    _assert_same_weights(source.head, target.head)


def test_report_sorts_every_variable_and_source_tensor(tmp_path):
    source = _Model(num_classes=3, seed=1)
    extra = tf.Module()
    extra.weight = tf.Variable(1.0)
    _save({"prediction_head": source.head, "semantic_head": extra}, tmp_path)
    target = _Model(num_classes=7, seed=2)
    fresh = target.head._transformer_class_head.kernel.numpy()
    report = pretrained.load_pretrained(target, str(tmp_path))
    assert report.restored == ("prediction_head/_hidden/bias", "prediction_head/_hidden/kernel")
    assert report.missing == ("backbone/bias", "backbone/kernel")
    assert [(m.key, m.model_shape, m.source_shape) for m in report.mismatched] == [
        ("prediction_head/_transformer_class_head/bias", (7,), (3,)),
        ("prediction_head/_transformer_class_head/kernel", (5, 7), (5, 3)),
    ]
    assert report.unused == (
        "prediction_head/_transformer_class_head/bias",
        "prediction_head/_transformer_class_head/kernel",
        "semantic_head/weight",
    )
    np.testing.assert_array_equal(target.head._transformer_class_head.kernel.numpy(), fresh)
    as_json = json.loads(json.dumps(report.to_json()))
    assert as_json["mismatched"][1]["source_shape"] == [5, 3]
    table = report.table()
    assert "backbone                0        2           0" in table
    assert "prediction_head         2        0           2" in table
    assert "source tensors not used: 3" in table


def test_check_fits_names_the_checkpoint_the_model_and_the_first_variables(tmp_path):
    prefix = _save(_Model(num_classes=3).checkpoint_items, tmp_path)
    report = pretrained.load_pretrained(_Model(num_classes=7), prefix)
    with pytest.raises(pretrained.CheckpointMismatchError) as error:
        report.check_fits("the model of configs/x.textproto")
    message = str(error.value)
    assert prefix in message and "the model of configs/x.textproto" in message
    assert "prediction_head/_transformer_class_head/bias (model [7], checkpoint [3]" in message
    assert "\n" not in message
    # Initialising for another dataset: new class heads are expected.
    report.check_fits("the model", new_classes=True)


def test_check_fits_for_new_classes_still_needs_a_fitting_checkpoint(tmp_path):
    other = _Model()
    other.backbone = tf_keras.layers.Dense(6, name="backbone")  # another architecture
    other.head = _Head(3)
    other.head(other.backbone(tf.zeros([1, 2])))
    report = pretrained.load_pretrained(_Model(), _save(other.checkpoint_items, tmp_path))
    with pytest.raises(pretrained.CheckpointMismatchError, match="backbone/kernel.*another shape"):
        report.check_fits("the model", new_classes=True)
    empty = tf.train.Checkpoint(unrelated=tf.Variable(1.0)).save(str(tmp_path / "empty" / "c"))
    report = pretrained.load_pretrained(_Model(), empty)
    with pytest.raises(pretrained.CheckpointMismatchError, match="fills none"):
        report.check_fits("the model", new_classes=True)


def test_items_restrict_what_is_filled(tmp_path):
    source, target = _Model(seed=1), _Model(seed=2)
    before = [w.numpy() for w in target.head.weights]
    report = pretrained.load_pretrained(
        target, _save(source.checkpoint_items, tmp_path), ["backbone"]
    )
    assert report.restored == ("backbone/bias", "backbone/kernel")
    assert len(report.unused) == 4
    _assert_same_weights(source.backbone, target.backbone)
    for old, weight in zip(before, target.head.weights, strict=True):
        np.testing.assert_array_equal(old, weight.numpy())
    with pytest.raises(ValueError, match=r"no items \['heads'\]"):
        pretrained.load_pretrained(target, str(tmp_path), ["heads"])


def test_deeplab2_checkpoint_is_detected_and_mapped(tmp_path):
    source, target = _Model(seed=1), _Model(seed=2)
    # DeepLab2 calls the backbone item "encoder" (the rest of its names are checked on the
    # real network in test_deeplab2_mapping).
    prefix = _save({"encoder": source.backbone}, tmp_path)
    report = pretrained.load_pretrained(target, prefix)
    assert report.source_format == "deeplab2"
    assert report.restored == ("backbone/bias", "backbone/kernel")
    _assert_same_weights(source.backbone, target.backbone)


def test_load_complete_requires_every_variable(tmp_path):
    source = _Model(seed=1)
    prefix = _save({"backbone": source.backbone}, tmp_path)
    with pytest.raises(pretrained.CheckpointMismatchError, match="4 variables missing"):
        pretrained.load_complete(_Model(seed=2), prefix, "the model")
    full = _save(source.checkpoint_items, tmp_path / "full")
    assert len(pretrained.load_complete(_Model(seed=2), full, "the model").restored) == 6


def test_unreadable_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint found in directory"):
        pretrained.load_pretrained(_Model(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no .*ckpt-7\.index either"):
        pretrained.load_pretrained(_Model(), str(tmp_path / "ckpt-7"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    with pytest.raises(pretrained.UnknownCheckpointFormatError, match="none of the known"):
        pretrained.load_pretrained(_Model(), str(notes))


def test_the_table_is_logged(tmp_path, caplog):
    # Earlier tests (CLIs) may leave the absl logger at WARNING; its own level decides.
    caplog.set_level("INFO", logger="absl")
    prefix = _save({"backbone": _Model().backbone}, tmp_path)
    pretrained.load_pretrained(_Model(), prefix)
    assert f"Weights from {prefix} (deeplab-video checkpoint)" in caplog.text
    assert "restored  missing  mismatched" in caplog.text
    assert "Not in the checkpoint (kept at initialisation): prediction_head/" in caplog.text


def test_describe_model():
    options = model_pb2.ModelOptions(num_classes=19)
    options.backbone.name = "resnet50"
    options.transformer_decoder.num_queries = 256
    options.pixel_decoder.channels[:] = [512, 256, 128, 64, 32]
    assert pretrained.describe_model(options, "configs/cityscapes/kmax_resnet50.textproto") == (
        "the model of configs/cityscapes/kmax_resnet50.textproto (backbone resnet50, "
        "19 classes, 256 queries, 5 pixel-decoder stages)"
    )
