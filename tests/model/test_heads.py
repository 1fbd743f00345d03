"""Tests of the prediction head and the auxiliary semantic head."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.model import heads
from deeplab_video.model.layers import normalization

_NORM = normalization.BatchNormFactory()
# A fresh batch norm in inference mode divides by sqrt(1 + epsilon).
_BN_SCALE = 1.0 / np.sqrt(1.0 + _NORM.epsilon)


def _count(layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _weight(layer, fragment: str) -> np.ndarray:
    (weight,) = [w for w in layer.weights if fragment in w.name]
    return weight.numpy()


def test_void_bias_gives_the_prior_probability():
    bias = heads.void_bias(20, 0.9)
    assert bias[:-1] == [0.0] * 19
    probabilities = tf.nn.softmax(tf.constant(bias)).numpy()
    assert probabilities[-1] == pytest.approx(0.9, abs=1e-6)


@pytest.mark.parametrize("num_frames", [1, 2])
def test_prediction_head_matches_its_definition(num_frames):
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(2, num_frames, 9, 11, 12)).astype(np.float32)
    class_features = rng.normal(size=(2, 4, 16)).astype(np.float32)
    mask_features = rng.normal(size=(2, 4, 16)).astype(np.float32)
    head = heads.KMaXPredictionHead(5, embedding_channels=8, head_channels=6, norm_layer=_NORM)
    outputs = head(pixels, class_features, mask_features, training=False)

    pixel_embeddings = outputs[common.PRED_PIXEL_FEATURES].numpy()
    assert pixel_embeddings.shape == (2, num_frames, 9, 11, 8)
    np.testing.assert_allclose(np.linalg.norm(pixel_embeddings, axis=-1), 1.0, rtol=1e-5)
    query_embeddings = outputs[common.PRED_QUERY_EMBEDDINGS].numpy()
    mask_kernel = _weight(head, "transformer_mask_head/conv/kernel").reshape(16, 8)
    np.testing.assert_allclose(
        query_embeddings, mask_features @ mask_kernel * _BN_SCALE, rtol=1e-4, atol=1e-5
    )
    expected_masks = np.einsum("bthwd,bnd->bthwn", pixel_embeddings, query_embeddings)
    np.testing.assert_allclose(
        outputs[common.PRED_MASK_LOGITS].numpy(),
        expected_masks * heads.MASK_LOGITS_INITIAL_SCALE * _BN_SCALE,
        rtol=1e-4,
        atol=1e-6,
    )
    class_kernel = _weight(head, "transformer_class_head/conv/kernel").reshape(16, 6)
    expected_classes = class_features @ class_kernel + np.array(heads.void_bias(6, 0.9))
    np.testing.assert_allclose(
        outputs[common.PRED_CLASS_LOGITS].numpy(), expected_classes, rtol=1e-4, atol=1e-5
    )


def test_prediction_head_starts_near_void():
    head = heads.KMaXPredictionHead(19, embedding_channels=8, head_channels=8)
    outputs = head(tf.ones([1, 1, 5, 5, 4]), tf.ones([1, 3, 256]), tf.ones([1, 3, 256]))
    void = tf.nn.softmax(outputs[common.PRED_CLASS_LOGITS])[..., -1].numpy()
    np.testing.assert_allclose(void, 0.9, atol=0.05)


def test_auxiliary_semantic_head_shape_and_parameters():
    # ResNet-50 widths (res5 2048, res3 512, res2 256) and 19 classes, DeepLab2 widths.
    head = heads.AuxiliarySemanticHead(19, norm_layer=_NORM)
    logits = head(
        tf.zeros([2, 3, 5, 2048]),
        [tf.zeros([2, 9, 17, 512]), tf.zeros([2, 17, 33, 256])],
        training=True,
    )
    assert logits.shape == (2, 17, 33, 19)
    aspp = 2048 * 256 * (1 + 3 * 9 + 1) + 5 * 256 * 256 + 6 * 2 * 256
    fusion8 = 512 * 64 + 2 * 64 + 25 * 320 + 2 * 320 + 320 * 256 + 2 * 256
    fusion4 = 256 * 32 + 2 * 32 + 25 * 288 + 2 * 288 + 288 * 256 + 2 * 256
    head_block = 25 * 256 + 2 * 256 + 256 * 256 + 2 * 256 + 256 * 19 + 19
    assert _count(head) == aspp + fusion8 + fusion4 + head_block == 15_827_187


def test_errors():
    with pytest.raises(ValueError, match="void_prior_prob"):
        heads.KMaXPredictionHead(3, void_prior_prob=1.0)
    head = heads.AuxiliarySemanticHead(3, 8, low_level_channels=(4, 4), decoder_channels=8)
    with pytest.raises(ValueError, match="expected 2 low-level features"):
        head(tf.zeros([1, 2, 2, 8]), [tf.zeros([1, 3, 3, 8])])


@pytest.mark.parametrize(
    "layer, args",
    [
        (
            heads.KMaXPredictionHead(3, 8, 8, name="pred"),
            (tf.ones([1, 2, 5, 5, 4]), tf.ones([1, 3, 8]), tf.ones([1, 3, 8])),
        ),
        (
            heads.AuxiliarySemanticHead(3, 8, low_level_channels=(4,), decoder_channels=8),
            (tf.ones([1, 3, 3, 8]), [tf.ones([1, 5, 5, 4])]),
        ),
    ],
)
def test_get_config_round_trip(layer, args):
    output = layer(*args, training=False)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(*args, training=False)
    clone.set_weights(layer.get_weights())
    tf.nest.map_structure(np.testing.assert_allclose, clone(*args, training=False), output)
