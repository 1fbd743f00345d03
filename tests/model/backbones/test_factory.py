"""Tests for deeplab_video/model/backbones/factory.py (and the registered backbones)."""

import pytest
import tf_keras

from deeplab_video import config
from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import normalization
from deeplab_video.protos import model_pb2


def _tiny(name, **kwargs):
    return model_pb2.BackboneOptions(
        name=name, width_multiplier=0.125, depth_multiplier=0.34, **kwargs
    )


def test_registry_matches_config_names():
    assert factory.registered_names() == config.BACKBONE_NAMES


def test_unknown_name_fails_with_the_name():
    with pytest.raises(KeyError, match="unknown backbone 'resnet101'.*resnet50, axial_resnet50"):
        factory.build_backbone(model_pb2.BackboneOptions(name="resnet101"))


def test_duplicate_registration_fails():
    with pytest.raises(KeyError, match="'resnet50' is registered twice"):
        factory.register_backbone("resnet50")(lambda options, norm_layer: None)
    assert factory.registered_names() == config.BACKBONE_NAMES


@pytest.mark.parametrize(
    "channels, multiplier, expected",
    [
        (64, 1.0, 64),
        (2048, 1.0, 2048),
        (64, 0.125, 8),
        (96, 0.125, 16),
        (3, 0.1, 8),
        (100, 0.5, 48),
    ],
)
def test_scale_width(channels, multiplier, expected):
    assert factory.scale_width(channels, multiplier) == expected


@pytest.mark.parametrize(
    "blocks, multiplier, expected",
    [(3, 1.0, 3), (3, 0.34, 1), (6, 0.34, 2), (27, 0.34, 9), (1, 0.01, 1)],
)
def test_scale_depth(blocks, multiplier, expected):
    assert factory.scale_depth(blocks, multiplier) == expected


def _batch_norms(model):
    return [m for m in model.submodules if isinstance(m, tf_keras.layers.BatchNormalization)]


def test_norm_layer_comes_from_options_unless_given():
    options = _tiny("resnet50", use_sync_batchnorm=False, batchnorm_momentum=0.9)
    backbone = factory.build_backbone(options)
    backbone(tf_keras.Input([33, 33, 3]))
    norms = _batch_norms(backbone)
    assert norms and all(n.momentum == pytest.approx(0.9) and not n.synchronized for n in norms)

    given = normalization.BatchNormFactory(True, 0.5, 1e-2)
    backbone = factory.build_backbone(options, norm_layer=given)
    backbone(tf_keras.Input([33, 33, 3]))
    norms = _batch_norms(backbone)
    assert all(n.momentum == pytest.approx(0.5) and n.synchronized for n in norms)


@pytest.mark.parametrize("name", config.BACKBONE_NAMES)
def test_endpoints_for_odd_sizes_and_unknown_batch(name):
    backbone = factory.build_backbone(_tiny(name))
    features = backbone(tf_keras.Input([65, 97, 3]), training=False)
    assert set(features) == {factory.RES1, *factory.ENDPOINTS}
    # The stem's output: stride 2 for the ResNets, 4 for ConvNeXt's patchify stem.
    stem_stride = 4 if name.startswith("convnext") else 2
    assert features[factory.RES1].shape.as_list() == [
        None,
        64 // stem_stride + 1,
        96 // stem_stride + 1,
        backbone.output_specs[factory.RES1],
    ]
    for endpoint, stride in factory.ENDPOINT_STRIDES.items():
        expected = [None, 64 // stride + 1, 96 // stride + 1, backbone.output_specs[endpoint]]
        assert features[endpoint].shape.as_list() == expected, endpoint
