"""Tests of the clip-kMaX transformer decoder and its layers."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video import common
from deeplab_video.model import transformer_decoder
from deeplab_video.model.layers import cross_attention, normalization

_KINDS = list(cross_attention.CROSS_ATTENTIONS)
_NORM = normalization.BatchNormFactory()
_WIDTHS = dict(
    query_channels=16,
    key_channels=8,
    value_channels=16,
    ffn_channels=32,
    num_heads=2,
    num_latent_memory=3,
    embedding_channels=8,
    head_channels=8,
)
# (height, width, channels) of the features at strides 32, 16 and 8.
_FEATURE_SHAPES = ((2, 3, 24), (3, 5, 16), (5, 9, 12))


def _decoder(kind: str = cross_attention.KMEANS, **overrides) -> tf_keras.layers.Layer:
    options = dict(
        _WIDTHS,
        num_classes=4,
        num_queries=6,
        num_layers_per_stage=(1, 1, 1),
        cross_attention_kind=kind,
        norm_layer=_NORM,
    )
    options.update(overrides)
    return transformer_decoder.KMaXTransformerDecoder(**options)


def _features(num_frames: int, seed: int = 0) -> list[tf.Tensor]:
    rng = np.random.default_rng(seed)
    return [
        tf.constant(rng.normal(size=(2, num_frames, h, w, c)).astype(np.float32))
        for h, w, c in _FEATURE_SHAPES
    ]


def _activate_residual_branches(layer: tf_keras.layers.Layer) -> None:
    """Sets every batch-norm gamma (zero on residual branches at init) to a random value."""
    rng = np.random.default_rng(1)
    for weight in layer.weights:
        if "gamma" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, size=weight.shape).astype(np.float32))


@pytest.mark.parametrize("kind", _KINDS)
@pytest.mark.parametrize("num_frames", [1, 2])
def test_output_shapes(kind, num_frames):
    class_features, mask_features, predictions = _decoder(kind)(
        _features(num_frames), training=False
    )
    assert class_features.shape == mask_features.shape == (2, 6, 16)
    assert len(predictions) == 3
    for prediction, (h, w, _) in zip(predictions, _FEATURE_SHAPES, strict=True):
        assert prediction[common.PRED_MASK_LOGITS].shape == (2, num_frames, h, w, 6)
        assert prediction[common.PRED_CLASS_LOGITS].shape == (2, 6, 5)


def test_layer_starts_as_its_shortcuts():
    # Every residual branch ends in a batch norm with gamma = 0, so at initialisation a
    # layer maps its queries q to gelu(gelu(q)) whatever the pixels.
    layer = transformer_decoder.KMaXTransformerLayer(4, **_WIDTHS, norm_layer=_NORM)
    queries = tf.random.normal([2, 6, 16], seed=2)
    refined, predictions = layer(_features(2)[1], queries, training=False)
    expected = tf.nn.gelu(tf.nn.gelu(queries, approximate=False), approximate=False)
    np.testing.assert_allclose(refined.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert predictions[common.PRED_MASK_LOGITS].shape == (2, 2, 3, 5, 6)


def test_deep_supervision_off():
    for kind in _KINDS:
        decoder = _decoder(kind, deep_supervision=False)
        _, _, predictions = decoder(_features(1), training=False)
        assert predictions == []
        heads_built = any("prediction_head" in w.name for w in decoder.weights)
        # k-means cross-attention needs each layer's mask logits in any case.
        assert heads_built == (kind == cross_attention.KMEANS), kind


@pytest.mark.parametrize("kind", _KINDS)
def test_queries_attend_across_frames(kind):
    decoder = _decoder(kind)
    features = _features(2)
    decoder(features, training=False)
    _activate_residual_branches(decoder)
    changed = [f + tf.one_hot(1, 2)[None, :, None, None, None] * 3.0 for f in features]
    class_a, _, predictions_a = decoder(features, training=False)
    class_b, _, predictions_b = decoder(changed, training=False)
    assert not np.allclose(class_a.numpy(), class_b.numpy())
    # The last layer's masks of frame 1 change although only frame 2 changed.
    masks_a = predictions_a[-1][common.PRED_MASK_LOGITS][:, 0].numpy()
    masks_b = predictions_b[-1][common.PRED_MASK_LOGITS][:, 0].numpy()
    assert np.abs(masks_a - masks_b).max() > 1e-4


@pytest.mark.parametrize("kind", _KINDS)
def test_one_training_step_reaches_every_weight(kind):
    decoder = _decoder(kind)
    features = _features(2)
    decoder(features, training=False)
    _activate_residual_branches(decoder)
    outputs = decoder(features, training=True)
    projections = tf.nest.map_structure(
        lambda x: tf.random.stateless_normal(tf.shape(x), seed=[3, 4]), outputs
    )
    with tf.GradientTape() as tape:
        outputs = decoder(features, training=True)
        loss = tf.add_n(
            [
                tf.reduce_sum(x * p)
                for x, p in zip(tf.nest.flatten(outputs), tf.nest.flatten(projections), strict=True)
            ]
        )
    gradients = tape.gradient(loss, decoder.trainable_weights)
    assert np.isfinite(loss.numpy())
    for weight, gradient in zip(decoder.trainable_weights, gradients, strict=True):
        assert gradient is not None, weight.name
        assert np.all(np.isfinite(gradient.numpy())), weight.name
    before = [w.numpy() for w in decoder.trainable_weights]
    tf_keras.optimizers.SGD(0.01).apply_gradients(
        zip(gradients, decoder.trainable_weights, strict=True)
    )
    for weight, value in zip(decoder.trainable_weights, before, strict=True):
        assert np.any(weight.numpy() != value), weight.name


def test_get_config_round_trip():
    features = _features(1)
    for layer, args in (
        (_decoder(cross_attention.LATENT_MEMORY, name="decoder"), (features,)),
        (
            transformer_decoder.KMaXTransformerLayer(4, **_WIDTHS, name="layer"),
            (features[0], tf.ones([2, 6, 16])),
        ),
    ):
        output = layer(*args, training=False)
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        clone(*args, training=False)
        clone.set_weights(layer.get_weights())
        tf.nest.map_structure(np.testing.assert_allclose, clone(*args, training=False), output)


def test_errors():
    with pytest.raises(ValueError, match="one count >= 0 per stride"):
        _decoder(num_layers_per_stage=(2, 2))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        _decoder(num_heads=3)
    with pytest.raises(ValueError, match="unknown cross-attention"):
        _decoder("dot")
    with pytest.raises(ValueError, match="expected features at strides"):
        _decoder()(_features(1)[:2])
