"""Tests of the Video-kMaX meta-architecture on the tiny synthetic configuration."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video import common, config
from deeplab_video.model import builder, video_kmax
from tests import conftest

_TINY_CONFIG = conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto"
# Frames of 4k+1 pixels: stride-4 outputs of k+1.
_HEIGHT, _WIDTH = 33, 65
_OUT_HEIGHT, _OUT_WIDTH = 9, 17


def _clip(num_frames: int, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant(
        rng.uniform(0, 255, size=(2, num_frames, _HEIGHT, _WIDTH, 3)).astype(np.float32)
    )


def _activate_residual_branches(model: tf_keras.Model) -> None:
    """Sets every batch-norm gamma (zero on residual branches at init) to a random value.

    At initialisation the decoder's residual branches are off, so the queries do not yet
    depend on the pixels; the cross-frame test needs them on.
    """
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if "gamma" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, size=weight.shape).astype(np.float32))


@pytest.fixture(scope="module")
def options():
    return config.load_config(_TINY_CONFIG)


@pytest.fixture(scope="module")
def training_model(options):
    return builder.build_model(options)


@pytest.fixture(scope="module")
def inference_model(options):
    return builder.build_model(options, inference_only=True)


@pytest.mark.parametrize("num_frames", [1, 2])
def test_training_model_outputs(training_model, options, num_frames):
    outputs = training_model(_clip(num_frames), training=True)
    queries = options.model_options.transformer_decoder.num_queries
    classes = options.model_options.num_classes
    embedding = options.model_options.heads.embedding_channels
    size = (2, num_frames, _OUT_HEIGHT, _OUT_WIDTH)
    assert outputs[common.PRED_MASK_LOGITS].shape == (*size, queries)
    assert outputs[common.PRED_CLASS_LOGITS].shape == (2, queries, classes + 1)
    assert outputs[common.PRED_QUERY_EMBEDDINGS].shape == (2, queries, embedding)
    query_channels = options.model_options.transformer_decoder.query_channels
    assert outputs[common.PRED_MASK_EMBEDDINGS].shape == (2, queries, query_channels)
    assert outputs[common.PRED_PIXEL_FEATURES].shape == (*size, embedding)
    assert outputs[common.PRED_SEMANTIC_LOGITS].shape == (*size, classes)
    auxiliary = outputs[common.PRED_AUX_OUTPUTS]
    assert len(auxiliary) == sum(options.model_options.transformer_decoder.num_layers_per_stage)
    for layer_outputs in auxiliary:
        assert set(layer_outputs) == {
            common.PRED_MASK_LOGITS,
            common.PRED_CLASS_LOGITS,
            common.PRED_PIXEL_FEATURES,
        }
        assert layer_outputs[common.PRED_MASK_LOGITS].shape == (*size, queries)
        assert layer_outputs[common.PRED_PIXEL_FEATURES].shape == (*size, embedding)
    for tensor in tf.nest.flatten(outputs):
        assert tensor.dtype == tf.float32
        assert np.all(np.isfinite(tensor.numpy()))


@pytest.mark.parametrize("num_frames", [1, 2])
def test_inference_model_outputs(inference_model, num_frames):
    outputs = inference_model(_clip(num_frames), training=False)
    assert set(outputs) == {
        common.PRED_MASK_LOGITS,
        common.PRED_CLASS_LOGITS,
        common.PRED_QUERY_EMBEDDINGS,
        common.PRED_MASK_EMBEDDINGS,
        common.PRED_PIXEL_FEATURES,
    }
    assert outputs[common.PRED_MASK_LOGITS].shape[:4] == (2, num_frames, _OUT_HEIGHT, _OUT_WIDTH)


def test_decoder_attends_across_frames(options):
    model = builder.build_model(options, inference_only=True)
    _activate_residual_branches(model)
    clip = _clip(2)
    changed = tf.concat([clip[:, :1], 255.0 - clip[:, 1:]], axis=1)
    first = model(clip, training=False)
    second = model(changed, training=False)
    # Only frame 2 changed; frame 1's masks change through the queries shared by the clip.
    assert not np.allclose(
        first[common.PRED_CLASS_LOGITS].numpy(), second[common.PRED_CLASS_LOGITS].numpy()
    )
    difference = first[common.PRED_MASK_LOGITS][:, 0] - second[common.PRED_MASK_LOGITS][:, 0]
    assert np.abs(difference.numpy()).max() > 1e-3
    # The pixel features of frame 1 are computed per frame and do not change.
    np.testing.assert_allclose(
        first[common.PRED_PIXEL_FEATURES][:, 0], second[common.PRED_PIXEL_FEATURES][:, 0]
    )


@pytest.mark.slow
def test_xla_matches_eager(inference_model):
    clip = _clip(2, seed=3)
    eager = inference_model(clip, training=False)
    compiled = tf.function(lambda x: inference_model(x, training=False), jit_compile=True)
    xla = compiled(clip)
    for key, value in eager.items():
        np.testing.assert_allclose(xla[key].numpy(), value.numpy(), atol=1e-4, rtol=1e-4)


def test_gradients_reach_every_trainable_weight(training_model):
    clip = _clip(2, seed=4)
    with tf.GradientTape() as tape:
        outputs = training_model(clip, training=True)
        loss = tf.add_n(
            [
                tf.reduce_sum(tf.sin(3.0 * tensor + float(index)))
                for index, tensor in enumerate(tf.nest.flatten(outputs))
            ]
        )
    gradients = tape.gradient(loss, training_model.trainable_weights)
    for weight, gradient in zip(training_model.trainable_weights, gradients, strict=True):
        assert gradient is not None, weight.name
        assert np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy())), weight.name


def test_mixed_float16_forward_returns_float32(options):
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = builder.build_model(options)
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    outputs = model(_clip(2), training=True)
    for tensor in tf.nest.flatten(outputs):
        assert tensor.dtype == tf.float32
        assert np.all(np.isfinite(tensor.numpy()))
    assert model.get_layer("transformer_decoder").compute_dtype == "float16"


def test_checkpoint_items(training_model, inference_model):
    assert set(training_model.checkpoint_items) == {
        "backbone",
        "pixel_decoder",
        "transformer_decoder",
        "prediction_head",
        "semantic_head",
    }
    assert "semantic_head" not in inference_model.checkpoint_items
    counted = sum(item.count_params() for item in training_model.checkpoint_items.values())
    assert counted == training_model.count_params()


def test_rejects_non_positive_input_std(training_model):
    items = training_model.checkpoint_items
    with pytest.raises(ValueError, match="input_std must be positive"):
        video_kmax.VideoKMaX(
            items["backbone"],
            items["pixel_decoder"],
            items["transformer_decoder"],
            items["prediction_head"],
            input_std=0.0,
        )
