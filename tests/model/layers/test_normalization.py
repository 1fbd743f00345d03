"""Tests for deeplab_video/model/layers/normalization.py."""

import pytest
import tf_keras

from deeplab_video.model.layers import normalization
from deeplab_video.protos import model_pb2


def test_factory_makes_configured_batch_norm():
    factory = normalization.BatchNormFactory(synchronized=True, momentum=0.9, epsilon=1e-5)
    layer = factory(axis=-1, name="bn", gamma_initializer="zeros")
    assert isinstance(layer, tf_keras.layers.BatchNormalization)
    assert layer.name == "bn"
    assert layer.momentum == pytest.approx(0.9)
    assert layer.epsilon == pytest.approx(1e-5)
    assert layer.synchronized
    assert isinstance(layer.gamma_initializer, tf_keras.initializers.Zeros)


def test_from_backbone_options():
    options = model_pb2.BackboneOptions(
        use_sync_batchnorm=False, batchnorm_momentum=0.95, batchnorm_epsilon=1e-4
    )
    factory = normalization.from_backbone_options(options)
    assert factory.get_config() == {
        "synchronized": False,
        "momentum": pytest.approx(0.95),
        "epsilon": pytest.approx(1e-4),
    }
    # Proto defaults are DeepLab2 kMaX's.
    assert normalization.default_factory().get_config() == {
        "synchronized": True,
        "momentum": pytest.approx(0.99),
        "epsilon": pytest.approx(1e-3),
    }


def test_resolve_and_config_round_trip():
    factory = normalization.BatchNormFactory(False, 0.9, 1e-3)
    assert normalization.resolve(factory) is factory
    assert normalization.resolve(factory.get_config()) == factory
    assert normalization.resolve(None) == normalization.default_factory()
    with pytest.raises(TypeError, match="BatchNormFactory"):
        normalization.resolve(tf_keras.layers.BatchNormalization)


@pytest.mark.parametrize("momentum, epsilon", [(1.0, 1e-3), (-0.1, 1e-3), (0.9, 0.0)])
def test_invalid_settings_raise(momentum, epsilon):
    with pytest.raises(ValueError):
        normalization.BatchNormFactory(momentum=momentum, epsilon=epsilon)


def test_layer_norm_epsilon():
    layer = normalization.layer_norm("ln")
    assert layer.epsilon == normalization.LAYER_NORM_EPSILON == 1e-6
    assert layer.name == "ln"
