"""Tests of the three cross-attention variants and the attention operation."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video import config
from deeplab_video.model.layers import cross_attention, normalization

_NORM = normalization.BatchNormFactory()
# A fresh batch norm in inference mode divides by sqrt(1 + epsilon).
_BN_SCALE = 1.0 / np.sqrt(1.0 + _NORM.epsilon)


def _gelu(x: np.ndarray) -> np.ndarray:
    return tf.nn.gelu(tf.constant(x, tf.float32), approximate=False).numpy()


def _inputs(num_frames: int = 2, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(2, 5, 16)).astype(np.float32)
    pixels = rng.normal(size=(2, num_frames, 12, 16)).astype(np.float32)
    logits = rng.normal(size=(2, num_frames, 12, 5)).astype(np.float32)
    return tf.constant(queries), tf.constant(pixels), tf.constant(logits)


def _build(kind: str, name: str = "cross") -> tf_keras.layers.Layer:
    return cross_attention.build_cross_attention(
        kind,
        key_channels=8,
        value_channels=16,
        num_heads=2,
        num_latent_memory=3,
        norm_layer=_NORM,
        name=name,
    )


def test_registry_matches_config_kinds():
    assert tuple(cross_attention.CROSS_ATTENTIONS) == config.CROSS_ATTENTION_KINDS


def test_kmeans_steps_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 9, 4)).astype(np.float32)
    values = rng.normal(size=(2, 9, 3)).astype(np.float32)
    assignment = cross_attention.kmeans_assignment(tf.constant(logits))
    expected_assignment = np.eye(4, dtype=np.float32)[logits.argmax(-1)]
    np.testing.assert_array_equal(assignment.numpy(), expected_assignment)
    update = cross_attention.kmeans_update(assignment, tf.constant(values))
    expected = np.zeros((2, 4, 3), np.float32)
    for b in range(2):
        for p in range(9):
            expected[b, logits[b, p].argmax()] += values[b, p]
    np.testing.assert_allclose(update.numpy(), expected, rtol=1e-6)


def test_kmeans_assignment_has_no_gradient_and_is_float32():
    logits = tf.Variable(tf.random.normal([1, 6, 3], dtype=tf.float16))
    with tf.GradientTape() as tape:
        assignment = cross_attention.kmeans_assignment(logits)
        loss = tf.reduce_sum(assignment * tf.range(3, dtype=tf.float32))
    assert assignment.dtype == tf.float32
    assert tape.gradient(loss, logits) is None


def test_kmeans_layer_matches_numpy():
    queries, pixels, logits = _inputs()
    layer = _build(cross_attention.KMEANS)
    output = layer(queries, pixels, logits, training=False).numpy()
    (kernel,) = [w for w in layer.weights if "pixel_value_conv_bn/conv/kernel" in w.name]
    kernel = kernel.numpy().reshape(16, 16)
    values = pixels.numpy().reshape(2, -1, 16) @ kernel * _BN_SCALE
    one_hot = np.eye(5)[logits.numpy().reshape(2, -1, 5).argmax(-1)]
    expected = np.einsum("bpn,bpc->bnc", one_hot, values) * _BN_SCALE
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)


def test_attention_operation_matches_numpy():
    rng = np.random.default_rng(2)
    query = rng.normal(size=(2, 3, 4)).astype(np.float32)
    key = rng.normal(size=(2, 7, 4)).astype(np.float32)
    value = rng.normal(size=(2, 7, 6)).astype(np.float32)
    layer = cross_attention.AttentionOperation(num_heads=2, norm_layer=_NORM)
    output = layer(query, key, value, training=False).numpy()
    expected = np.zeros((2, 3, 6), np.float32)
    for head in range(2):
        q, k = query[..., 2 * head : 2 * head + 2], key[..., 2 * head : 2 * head + 2]
        logits = np.einsum("bqd,bkd->bqk", q, k) * _BN_SCALE
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        expected[..., 3 * head : 3 * head + 3] = weights @ value[..., 3 * head : 3 * head + 3]
    np.testing.assert_allclose(output, _gelu(expected * _BN_SCALE), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", list(cross_attention.CROSS_ATTENTIONS))
@pytest.mark.parametrize("num_frames", [1, 2])
def test_variant_output_shape(kind, num_frames):
    queries, pixels, logits = _inputs(num_frames)
    output = _build(kind)(queries, pixels, logits, training=False)
    assert output.shape == (2, 5, 16)
    assert output.dtype == tf.float32


@pytest.mark.parametrize("kind", list(cross_attention.CROSS_ATTENTIONS))
def test_variant_trains_one_step_with_gradients_everywhere(kind):
    queries, pixels, logits = _inputs()
    queries, pixels = tf.Variable(queries), tf.Variable(pixels)
    layer = _build(kind)
    weights = tf.random.normal([2, 5, 16], seed=3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(queries, pixels, logits, training=True) * weights)
    variables = layer.trainable_weights + [pixels]
    if kind != cross_attention.KMEANS:
        variables.append(queries)
    gradients = tape.gradient(loss, variables)
    for variable, gradient in zip(variables, gradients, strict=True):
        assert gradient is not None, variable.name
        assert np.all(np.isfinite(gradient.numpy())), variable.name
        assert np.any(gradient.numpy() != 0), variable.name
    before = [w.numpy() for w in layer.trainable_weights]
    tf_keras.optimizers.SGD(0.1).apply_gradients(
        zip(gradients[: len(before)], layer.trainable_weights, strict=True)
    )
    assert all(np.any(w.numpy() != b) for w, b in zip(layer.trainable_weights, before, strict=True))


def test_queries_matter_only_without_kmeans():
    queries, pixels, logits = _inputs()
    for kind in cross_attention.CROSS_ATTENTIONS:
        layer = _build(kind)
        first = layer(queries, pixels, logits, training=False)
        second = layer(queries * 2.0 + 1.0, pixels, logits, training=False)
        changed = not np.allclose(first.numpy(), second.numpy())
        assert changed == (kind != cross_attention.KMEANS), kind


def test_latent_memory_reads_each_frame_separately():
    # Swapping the frames of the clip permutes the memory entries only: the queries attend
    # over all of them, so the output is unchanged.
    queries, pixels, logits = _inputs()
    layer = _build(cross_attention.LATENT_MEMORY)
    output = layer(queries, pixels, logits, training=False)
    swapped = layer(queries, pixels[:, ::-1], logits, training=False)
    np.testing.assert_allclose(output.numpy(), swapped.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(cross_attention.CROSS_ATTENTIONS))
def test_get_config_round_trip(kind):
    queries, pixels, logits = _inputs()
    layer = _build(kind, name=f"{kind}_layer")
    output = layer(queries, pixels, logits, training=False)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(queries, pixels, logits, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(queries, pixels, logits, training=False), output)


def test_errors():
    queries, pixels, logits = _inputs()
    with pytest.raises(ValueError, match="unknown cross-attention 'dot'"):
        _build("dot")
    with pytest.raises(ValueError, match="needs the mask logits"):
        _build(cross_attention.KMEANS)(queries, pixels, None)
    with pytest.raises(ValueError, match="share one width"):
        _build(cross_attention.SOFTMAX)(queries, pixels[..., :8], logits)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        cross_attention.SoftmaxCrossAttention(8, 12, num_heads=8)
