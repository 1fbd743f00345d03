"""Tests for deeplab_video/model/pixel_decoder.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model import pixel_decoder
from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import normalization
from deeplab_video.protos import model_pb2

_NORM = normalization.BatchNormFactory(False, 0.99, 1e-3)
_TINY_DECODER = dict(
    num_blocks=[1, 1, 1, 1],
    block_types=["axial", "axial", "bottleneck", "bottleneck"],
    channels=[16, 16, 8, 8],
)
_RESNET_CHANNELS = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}


@pytest.fixture
def restore_policy():
    yield
    tf_keras.mixed_precision.set_global_policy("float32")


def _features(channels, height=65, width=65, batch=1):
    """Zero features of a (height x width) image for the given endpoint widths."""
    return {
        name: tf.zeros([batch, (height - 1) // s + 1, (width - 1) // s + 1, channels[name]])
        for name, s in factory.ENDPOINT_STRIDES.items()
    }


def _tiny_network(backbone_name, keep_prob=1.0):
    backbone = factory.build_backbone(
        model_pb2.BackboneOptions(
            name=backbone_name,
            width_multiplier=0.125,
            depth_multiplier=0.34,
            drop_path_keep_prob=keep_prob,
        ),
        norm_layer=_NORM,
    )
    options = model_pb2.PixelDecoderOptions(drop_path_keep_prob=keep_prob, **_TINY_DECODER)
    decoder = pixel_decoder.KMaXPixelDecoder(options, backbone.output_specs, norm_layer=_NORM)
    return backbone, decoder


@pytest.mark.parametrize(
    "channels, total, trainable",
    [
        # Same counts as DeepLab2 (64bc1c1) KMaXPixelDecoder on each backbone's endpoints.
        (_RESNET_CHANNELS, 21_238_144, 21_151_040),  # resnet50, axial_resnet50
        ({"res2": 96, "res3": 192, "res4": 384, "res5": 768}, 21_288_640, 21_197_440),
        ({"res2": 128, "res3": 256, "res4": 512, "res5": 1024}, 22_119_040, 22_027_840),
        ({"res2": 192, "res3": 384, "res4": 768, "res5": 1536}, 23_779_840, 23_688_640),
    ],
    ids=["resnet50", "convnext_tiny_small", "convnext_base", "convnext_large"],
)
def test_parameter_counts_with_default_options(channels, total, trainable):
    decoder = pixel_decoder.KMaXPixelDecoder(model_pb2.PixelDecoderOptions(), channels)
    outputs = decoder(_features(channels), training=False)
    assert decoder.count_params() == total
    assert sum(int(np.prod(w.shape)) for w in decoder.trainable_weights) == trainable
    assert decoder.output_specs == {
        "decoder_os32": 2048,
        "decoder_os16": 1024,
        "decoder_os8": 512,
        "decoder_os4": 256,
        "decoder_output": 256,
    }
    assert outputs["decoder_os4"].shape == (1, 17, 17, 256)
    assert outputs["decoder_output"] is outputs["decoder_os4"]


def test_stem_stage_as_deeplab2_cityscapes():
    # DeepLab2's Cityscapes kMaX pixel decoder: a fifth bottleneck stage (32 filters) at the
    # backbone's stem output (stride 2 for ResNet-50), where the prediction head reads.
    options = model_pb2.PixelDecoderOptions(
        num_blocks=[1, 5, 1, 1, 1],
        block_types=["axial", "axial", "bottleneck", "bottleneck", "bottleneck"],
        channels=[512, 256, 128, 64, 32],
    )
    channels = {"res1": 64, **_RESNET_CHANNELS}
    decoder = pixel_decoder.KMaXPixelDecoder(options, channels)
    features = _features(_RESNET_CHANNELS)
    features["res1"] = tf.zeros([1, 33, 33, 64])
    outputs = decoder(features, training=False)
    # Same counts as DeepLab2 (64bc1c1) kMaX-DeepLab's Cityscapes pixel decoder on resnet50.
    assert decoder.count_params() == 21_268_480
    assert sum(int(np.prod(w.shape)) for w in decoder.trainable_weights) == 21_180_608
    assert outputs[pixel_decoder.DECODER_STEM].shape == (1, 33, 33, 128)
    assert outputs[pixel_decoder.DECODER_OUTPUT] is outputs[pixel_decoder.DECODER_STEM]
    assert decoder.output_specs[pixel_decoder.DECODER_OUTPUT] == 128
    with pytest.raises(ValueError, match=r"lacks backbone endpoints \['res1'\]"):
        pixel_decoder.KMaXPixelDecoder(options, _RESNET_CHANNELS)


def test_default_stages_follow_kmax():
    decoder = pixel_decoder.KMaXPixelDecoder(model_pb2.PixelDecoderOptions(), _RESNET_CHANNELS)
    stages = [stage.get_config() for stage in decoder._stages]
    assert [len(s["block_types"]) for s in stages] == [1, 5, 1, 1]
    assert [s["block_types"][0] for s in stages] == ["axial", "axial", "bottleneck", "bottleneck"]
    assert [s["filters"] for s in stages] == [512, 256, 128, 64]
    assert {s["activation"] for s in stages} == {"gelu"}
    assert {s["atrous_rate"] for s in stages} == {2}  # DeepLab2's dilation


def test_bottleneck_atrous_rate_option():
    options = model_pb2.PixelDecoderOptions(bottleneck_atrous_rate=1)
    decoder = pixel_decoder.KMaXPixelDecoder(options, _RESNET_CHANNELS)
    assert {stage.get_config()["atrous_rate"] for stage in decoder._stages} == {1}
    with pytest.raises(ValueError, match="bottleneck_atrous_rate"):
        pixel_decoder.KMaXPixelDecoder(
            model_pb2.PixelDecoderOptions(bottleneck_atrous_rate=0), _RESNET_CHANNELS
        )


@pytest.mark.parametrize("height, width", [(65, 97), (64, 30)])
def test_outputs_match_skip_sizes_with_unknown_batch(height, width):
    channels = {"res2": 16, "res3": 24, "res4": 32, "res5": 40}
    decoder = pixel_decoder.KMaXPixelDecoder(
        model_pb2.PixelDecoderOptions(**_TINY_DECODER), channels, norm_layer=_NORM
    )
    inputs = {k: tf_keras.Input(v.shape[1:]) for k, v in _features(channels, height, width).items()}
    outputs = decoder(inputs)
    strides = ("res5", "res4", "res3", "res2")
    for name, endpoint in zip(pixel_decoder.DECODER_ENDPOINTS, strides, strict=True):
        assert outputs[name].shape.as_list() == (
            inputs[endpoint].shape.as_list()[:3] + [decoder.output_specs[name]]
        )
    # The backbone endpoints pass through.
    assert set(outputs) == set(factory.ENDPOINTS) | set(pixel_decoder.DECODER_ENDPOINTS) | {
        pixel_decoder.DECODER_OUTPUT
    }
    eager = _features(channels, height, width)
    assert all(decoder(eager)[k] is eager[k] for k in factory.ENDPOINTS)


def test_empty_options_take_config_defaults():
    assert pixel_decoder.stage_settings(model_pb2.PixelDecoderOptions()) == (
        [1, 5, 1, 1],
        ["axial", "axial", "bottleneck", "bottleneck"],
        [512, 256, 128, 64],
    )


@pytest.mark.parametrize(
    "options, channels, message",
    [
        (dict(num_blocks=[1, 1, 1]), _RESNET_CHANNELS, "one entry per stage"),
        (dict(num_blocks=[1, 1, 1, 1, 1]), _RESNET_CHANNELS, "one entry per stage"),
        (dict(block_types=["axial", "conv", "axial", "axial"]), _RESNET_CHANNELS, "unknown"),
        (dict(num_blocks=[1, 0, 1, 1]), _RESNET_CHANNELS, "must be positive"),
        (dict(channels=[512, 12, 128, 64]), _RESNET_CHANNELS, "not divisible by 8 heads"),
        (dict(drop_path_keep_prob=0.0), _RESNET_CHANNELS, "keep probability"),
        (dict(), {"res2": 8, "res3": 8}, r"lacks backbone endpoints \['res4', 'res5'\]"),
    ],
)
def test_invalid_arguments_raise(options, channels, message):
    with pytest.raises(ValueError, match=message):
        pixel_decoder.KMaXPixelDecoder(model_pb2.PixelDecoderOptions(**options), channels)


def test_gradients_reach_every_weight_of_backbone_and_decoder():
    backbone, decoder = _tiny_network("axial_resnet50")
    x = tf.random.normal([2, 33, 33, 3])
    decoder(backbone(x))
    weights = backbone.trainable_weights + decoder.trainable_weights
    for weight in weights:  # Undo the zero gammas so every branch matters.
        if "gamma" in weight.name:
            weight.assign(tf.ones_like(weight))
    with tf.GradientTape() as tape:
        outputs = decoder(backbone(x, training=True), training=True)
        loss = sum(tf.reduce_sum(outputs[k] ** 2) for k in pixel_decoder.DECODER_ENDPOINTS)
    grads = tape.gradient(loss, weights)
    for weight, grad in zip(weights, grads, strict=True):
        assert grad is not None, weight.name
        assert np.any(tf.convert_to_tensor(grad).numpy() != 0), weight.name


def test_jit_compiled_forward_matches_eager():
    # One block per stage and a single axial stage keep the XLA compilation short (the
    # axial layers have their own jit test).
    backbone = factory.build_backbone(
        model_pb2.BackboneOptions(name="resnet50", width_multiplier=0.125, depth_multiplier=0.01),
        norm_layer=_NORM,
    )
    options = model_pb2.PixelDecoderOptions(
        num_blocks=[1, 1, 1, 1],
        block_types=["axial", "bottleneck", "bottleneck", "bottleneck"],
        channels=[16, 16, 8, 8],
        drop_path_keep_prob=0.8,
    )
    decoder = pixel_decoder.KMaXPixelDecoder(options, backbone.output_specs, norm_layer=_NORM)

    def forward(images):
        return decoder(backbone(images, training=False), training=False)

    x = tf.random.normal([2, 33, 49, 3])
    eager = forward(x)
    compiled = tf.function(forward, jit_compile=True)(x)
    for name in pixel_decoder.DECODER_ENDPOINTS:
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_synthetic_config_network_compiles_for_training():
    # The tiny network of configs/synthetic: a jit-compiled training step gives finite
    # gradients for every weight and the same inference outputs as eager.
    backbone = factory.build_backbone(
        model_pb2.BackboneOptions(
            name="resnet50",
            width_multiplier=0.125,
            depth_multiplier=0.34,
            use_sync_batchnorm=False,
            drop_path_keep_prob=0.8,
        )
    )
    options = model_pb2.PixelDecoderOptions(
        num_blocks=[1, 1, 1, 1],
        block_types=["axial", "axial", "bottleneck", "bottleneck"],
        channels=[64, 32, 16, 16],
        drop_path_keep_prob=0.8,
    )
    decoder = pixel_decoder.KMaXPixelDecoder(options, backbone.output_specs)
    x = tf.random.normal([2, 97, 129, 3])
    decoder(backbone(x))
    weights = backbone.trainable_weights + decoder.trainable_weights

    @tf.function(jit_compile=True)
    def train_step(images):
        with tf.GradientTape() as tape:
            outputs = decoder(backbone(images, training=True), training=True)
            loss = tf.reduce_mean(outputs[pixel_decoder.DECODER_OS4] ** 2)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]

    grads = train_step(x)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    eager = decoder(backbone(x))  # After the step, which moved the batch-norm statistics.
    compiled = tf.function(lambda t: decoder(backbone(t)), jit_compile=True)(x)
    for name in pixel_decoder.DECODER_ENDPOINTS:
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-4, atol=1e-4)


def test_mixed_bfloat16(restore_policy):
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    backbone, decoder = _tiny_network("axial_resnet50", keep_prob=0.8)
    outputs = decoder(backbone(tf.random.normal([2, 33, 33, 3]), training=True), training=True)
    for name in pixel_decoder.DECODER_ENDPOINTS:
        assert outputs[name].dtype == tf.bfloat16
        assert np.all(np.isfinite(tf.cast(outputs[name], tf.float32).numpy()))
    assert {w.dtype for w in decoder.weights} == {tf.float32}


def test_config_round_trip():
    options = model_pb2.PixelDecoderOptions(drop_path_keep_prob=0.9, **_TINY_DECODER)
    decoder = pixel_decoder.KMaXPixelDecoder(
        options, _RESNET_CHANNELS, norm_layer=_NORM, axial_max_span=65
    )
    config = decoder.get_config()
    clone = pixel_decoder.KMaXPixelDecoder.from_config(config)
    assert clone.get_config() == config
    assert (
        clone.output_specs
        == decoder.output_specs
        == {
            "decoder_os32": 64,
            "decoder_os16": 64,
            "decoder_os8": 32,
            "decoder_os4": 32,
            "decoder_output": 32,
        }
    )
