"""Tests for deeplab_video/model/layers/stems.py."""

import tf_keras

from deeplab_video.model.layers import normalization, stems


def test_inception_stem_shapes_and_widths():
    stem = stems.InceptionStem(8, norm_layer=normalization.BatchNormFactory())
    y = stem(tf_keras.Input([65, 64, 3]))
    assert y.shape.as_list() == [None, 33, 32, 16]
    assert stem.output_channels == 16
    kernels = [tuple(w.shape) for w in stem.weights if "kernel" in w.name]
    assert kernels == [(3, 3, 3, 8), (3, 3, 8, 8), (3, 3, 8, 16)]


def test_config_round_trip():
    stem = stems.InceptionStem(16, activation="relu")
    config = stem.get_config()
    assert stems.InceptionStem.from_config(config).get_config() == config
