"""Tests for deeplab_video/model/layers/axial_attention.py: a numpy oracle on tiny inputs."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import axial_attention, normalization

_EPS = 1e-3
_NORM = normalization.BatchNormFactory(False, 0.99, _EPS)


@pytest.fixture
def restore_policy():
    yield
    tf_keras.mixed_precision.set_global_policy("float32")


def _randomize(layer, seed):
    """Gives every weight (batch-norm statistics included) random values."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        value = rng.normal(size=weight.shape)
        if "moving_variance" in weight.name or "gamma" in weight.name:
            value = 0.5 + np.abs(value)
        weight.assign(value.astype(np.float32))


def _weights(layer, axis_name):
    """Weights of one AxialAttention layer by short name, e.g. 'batch_norm_qkv/gamma'."""
    out = {}
    for weight in layer.weights:
        parts = weight.name.split(":")[0].split("/")
        if axis_name in parts:
            out["/".join(parts[parts.index(axis_name) + 1 :])] = weight.numpy()
    return out


def _bn(x, w, prefix):
    mean, var = w[f"{prefix}/moving_mean"], w[f"{prefix}/moving_variance"]
    return (x - mean) / np.sqrt(var + _EPS) * w[f"{prefix}/gamma"] + w[f"{prefix}/beta"]


def _numpy_axial(x, w, heads, max_span):
    """Position-sensitive 1D attention written out with explicit index tables; x [n, L, C]."""
    n, length, _ = x.shape
    qkv = _bn(x @ w["qkv_kernel"], w, "batch_norm_qkv")
    value_depth = w["value_rpe/embeddings"].shape[1] * heads
    key_depth = (qkv.shape[-1] - value_depth) // 2
    q = qkv[..., :key_depth].reshape(n, length, heads, -1)
    k = qkv[..., key_depth : 2 * key_depth].reshape(n, length, heads, -1)
    v = qkv[..., 2 * key_depth :].reshape(n, length, heads, -1)
    rows = np.clip(
        np.arange(length)[None, :] - np.arange(length)[:, None] + max_span - 1,
        0,
        2 * max_span - 2,
    )
    q_rpe = w["query_rpe/embeddings"][rows]  # [L, L, dk]
    k_rpe = w["key_rpe/embeddings"][rows]
    v_rpe = w["value_rpe/embeddings"][rows]
    out = np.zeros((n, length, value_depth))
    for b in range(n):
        for h in range(heads):
            terms = np.stack(
                [
                    q[b, :, h] @ k[b, :, h].T,
                    np.einsum("ld,lmd->lm", q[b, :, h], q_rpe),
                    np.einsum("md,lmd->lm", k[b, :, h], k_rpe),
                ]
            )  # [3, L, L]
            gamma = w["batch_norm_similarity/gamma"][:, 0, h, 0, 0][:, None, None]
            beta = w["batch_norm_similarity/beta"][:, 0, h, 0, 0][:, None, None]
            mean = w["batch_norm_similarity/moving_mean"][:, 0, h, 0, 0][:, None, None]
            var = w["batch_norm_similarity/moving_variance"][:, 0, h, 0, 0][:, None, None]
            logits = ((terms - mean) / np.sqrt(var + _EPS) * gamma + beta).sum(0)
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            attn /= attn.sum(-1, keepdims=True)
            retrieved = np.stack([attn @ v[b, :, h], np.einsum("lm,lmd->ld", attn, v_rpe)])
            p = {
                key: w[f"batch_norm_retrieved_output/{key}"][:, 0, h, 0, :][:, None, :]
                for key in ("gamma", "beta", "moving_mean", "moving_variance")
            }
            normed = (retrieved - p["moving_mean"]) / np.sqrt(p["moving_variance"] + _EPS)
            normed = normed * p["gamma"] + p["beta"]
            depth = v.shape[-1]
            out[b, :, h * depth : (h + 1) * depth] = normed.sum(0)
    return out


def test_relative_distance_indices_by_hand():
    rows = axial_attention.relative_distance_indices(4, 2).numpy()
    # key - query + 1, clipped to [0, 2].
    expected = [[1, 2, 2, 2], [0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]]
    np.testing.assert_array_equal(rows, expected)


def test_axial_attention_matches_numpy():
    layer = axial_attention.AxialAttention(8, 12, num_heads=2, max_span=3, norm_layer=_NORM)
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    layer(x)
    _randomize(layer, 1)
    y = layer(x, training=False).numpy()
    expected = _numpy_axial(x, _weights(layer, layer.name), heads=2, max_span=3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_axial_attention_2d_matches_numpy_and_strides():
    layer = axial_attention.AxialAttention2D(4, num_heads=2, max_span=4, norm_layer=_NORM)
    x = np.random.default_rng(2).normal(size=(1, 5, 3, 6)).astype(np.float32)
    layer(x)
    _randomize(layer, 3)
    y = layer(x, training=False).numpy()
    # Height axis: every column is one sequence; then the width axis on every row.
    cols = _numpy_axial(
        x.transpose(0, 2, 1, 3).reshape(3, 5, 6), _weights(layer, "height_axis"), 2, 4
    )
    h_out = cols.reshape(1, 3, 5, 8).transpose(0, 2, 1, 3)
    rows = _numpy_axial(h_out.reshape(5, 3, 8), _weights(layer, "width_axis"), 2, 4)
    np.testing.assert_allclose(y, rows.reshape(1, 5, 3, 8), rtol=1e-4, atol=1e-4)

    strided = axial_attention.AxialAttention2D(
        4, strides=2, num_heads=2, max_span=4, norm_layer=_NORM
    )
    strided(x)
    strided.set_weights(layer.get_weights())
    np.testing.assert_allclose(strided(x).numpy(), y[:, ::2, ::2], rtol=1e-5, atol=1e-5)


def test_shapes_with_unknown_sizes():
    layer = axial_attention.AxialAttention2D(8, strides=2, norm_layer=_NORM)
    symbolic = layer(tf_keras.Input([None, None, 16]))
    assert symbolic.shape.as_list() == [None, None, None, 16]
    y = layer(tf.random.normal([2, 9, 7, 16]))
    assert y.shape == (2, 5, 4, 16)
    # The tables do not depend on the input size: 2 * 255 - 1 rows.
    tables = [w for w in layer.weights if "rpe" in w.name]
    assert {w.shape[0] for w in tables} == {2 * axial_attention.MAX_SPAN - 1}


def test_jit_matches_eager():
    layer = axial_attention.AxialAttention2D(8, norm_layer=_NORM)
    x = tf.random.normal([2, 5, 7, 16])
    eager = layer(x, training=False)
    compiled = tf.function(lambda t: layer(t, training=False), jit_compile=True)(x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-4)


def test_mixed_bfloat16_close_to_float32(restore_policy):
    x = tf.random.normal([1, 5, 7, 16], seed=4)
    reference = axial_attention.AxialAttention2D(8, norm_layer=_NORM)
    expected = reference(x, training=False)
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = axial_attention.AxialAttention2D(8, norm_layer=_NORM)
    layer(x)
    layer.set_weights(reference.get_weights())
    y = layer(x, training=False)
    assert y.dtype == tf.bfloat16
    assert all(w.dtype == tf.float32 for w in layer.weights)
    np.testing.assert_allclose(tf.cast(y, tf.float32), expected, rtol=0.1, atol=0.1)


def test_heads_must_divide_depths():
    with pytest.raises(ValueError, match="divisible by num_heads 8"):
        axial_attention.AxialAttention(12, 24, num_heads=8)


def test_config_round_trip():
    layer = axial_attention.AxialAttention2D(
        8, strides=2, num_heads=4, max_span=33, norm_layer=_NORM, name="attention"
    )
    config = layer.get_config()
    assert axial_attention.AxialAttention2D.from_config(config).get_config() == config
    one_axis = axial_attention.AxialAttention(8, 16, num_heads=4, norm_layer=_NORM)
    config = one_axis.get_config()
    assert axial_attention.AxialAttention.from_config(config).get_config() == config
