"""Tests for deeplab_video.loss.loss_builder: weights, deep supervision, graph modes."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import loss_builder
from deeplab_video.protos import trainer_pb2
from tests.loss import clip_fixtures, numpy_reference

# kMaX-DeepLab constants that LossOptions does not carry.
_ALPHA, _LOGIT_TEMPERATURE = 0.75, 0.3
_PIXELS = clip_fixtures.FRAMES * clip_fixtures.HEIGHT * clip_fixtures.WIDTH
_ALL_TERMS = [
    common.LOSS_PQ_STYLE,
    common.LOSS_MASK_ID_CROSS_ENTROPY,
    common.LOSS_INSTANCE_DISCRIMINATION,
    common.LOSS_AUXILIARY_SEMANTIC,
]
# What every decoder layer predicts (PRED_AUX_OUTPUTS entries).
_LAYER_KEYS = (common.PRED_MASK_LOGITS, common.PRED_CLASS_LOGITS, common.PRED_PIXEL_FEATURES)


def _options(**fields) -> trainer_pb2.LossOptions:
    # Every pixel is used, so the sampled terms are deterministic.
    fields.setdefault("instance_discrimination_sample_k", 0)
    fields.setdefault("auxiliary_semantic_sample_k", 0)
    return trainer_pb2.LossOptions(**fields)


def _build(**fields) -> loss_builder.VideoKMaXLoss:
    return loss_builder.VideoKMaXLoss(
        _options(**fields), clip_fixtures.NUM_CLASSES, clip_fixtures.IGNORE_LABEL
    )


def _inputs(num_aux: int = 1):
    targets = clip_fixtures.make_targets()
    predictions = clip_fixtures.make_predictions()
    aux = []
    for index in range(num_aux):
        layer = clip_fixtures.make_predictions(seed=10 + index)
        aux.append({key: layer[key] for key in _LAYER_KEYS})
    predictions[common.PRED_AUX_OUTPUTS] = aux
    return targets, predictions


def _to_tf(tree):
    return tf.nest.map_structure(tf.constant, tree)


def _reference(targets, predictions, options, layers):
    """Weighted reference losses [batch] per term; `layers` are the supervised outputs."""
    result = {name: np.zeros(clip_fixtures.BATCH) for name in _ALL_TERMS}
    for b in range(clip_fixtures.BATCH):
        gt, real, pixel_valid = clip_fixtures.reference_clip(targets, b)
        classes = targets[common.TUBE_CLASSES][b]

        def flat(layer, b=b):
            return (
                layer[common.PRED_MASK_LOGITS][b].reshape(_PIXELS, -1),
                layer[common.PRED_CLASS_LOGITS][b],
            )

        final_match = None
        for layer in layers:
            mask_logits, class_logits = flat(layer)
            if final_match is None or not options.share_final_matching:
                match = numpy_reference.match(
                    mask_logits, class_logits, gt, real, classes, pixel_valid, 1e-5
                )
                final_match = final_match or match
            else:
                match = final_match
            dice, class_term = numpy_reference.pq_terms(
                mask_logits, class_logits, match, gt, classes, _ALPHA, 1e-5, options.dice_smooth
            )
            result[common.LOSS_PQ_STYLE][b] += options.pq_style_weight * (
                dice + options.pq_style_class_term_weight * class_term
            )
            result[common.LOSS_MASK_ID_CROSS_ENTROPY][b] += (
                options.mask_id_cross_entropy_weight
                * numpy_reference.mask_id(mask_logits, match, gt)
            )
            features = layer[common.PRED_PIXEL_FEATURES][b].reshape(_PIXELS, -1)
            result[common.LOSS_INSTANCE_DISCRIMINATION][b] += (
                options.instance_discrimination_weight
                * numpy_reference.instance_discrimination(
                    features, gt, pixel_valid, _LOGIT_TEMPERATURE
                )
            )
        result[common.LOSS_AUXILIARY_SEMANTIC][b] = (
            options.auxiliary_semantic_weight
            * numpy_reference.semantic(
                predictions[common.PRED_SEMANTIC_LOGITS][b].reshape(_PIXELS, -1),
                targets[common.SEMANTIC_STRIDED][b].reshape(-1),
                np.ones(_PIXELS),
                options.auxiliary_semantic_top_k_percent,
                clip_fixtures.IGNORE_LABEL,
            )
        )
    result[common.LOSS_TOTAL] = sum(result.values())
    return result


def _assert_losses_close(losses, expected, rtol=1e-5):
    assert sorted(losses) == sorted(expected)
    for name, value in losses.items():
        assert value.dtype == tf.float32 and value.shape == (clip_fixtures.BATCH,)
        np.testing.assert_allclose(value.numpy(), expected[name], rtol=rtol, err_msg=name)


def test_loss_names_are_published_up_front():
    assert _build().get_loss_names() == [*_ALL_TERMS, common.LOSS_TOTAL]
    names = _build(mask_id_cross_entropy_weight=0.0, auxiliary_semantic_weight=0.0)
    assert names.get_loss_names() == [
        common.LOSS_PQ_STYLE,
        common.LOSS_INSTANCE_DISCRIMINATION,
        common.LOSS_TOTAL,
    ]
    without_head = loss_builder.VideoKMaXLoss(
        _options(), clip_fixtures.NUM_CLASSES, 255, auxiliary_semantic_head=False
    )
    assert common.LOSS_AUXILIARY_SEMANTIC not in without_head.get_loss_names()


@pytest.mark.parametrize("share_final_matching", [True, False])
def test_losses_equal_the_weighted_reference_with_deep_supervision(share_final_matching):
    targets, predictions = _inputs(num_aux=2)
    options = _options(share_final_matching=share_final_matching)
    loss = loss_builder.VideoKMaXLoss(options, clip_fixtures.NUM_CLASSES, 255)
    losses = loss(_to_tf(targets), _to_tf(predictions))
    layers = [predictions, *predictions[common.PRED_AUX_OUTPUTS]]
    _assert_losses_close(losses, _reference(targets, predictions, options, layers))


def test_deep_supervision_adds_each_aux_layer():
    targets, predictions = _inputs(num_aux=0)
    final_only = _build()(_to_tf(targets), _to_tf(predictions))
    predictions[common.PRED_AUX_OUTPUTS] = [{key: predictions[key] for key in _LAYER_KEYS}] * 2
    tripled = _build()(_to_tf(targets), _to_tf(predictions))
    for name in (
        common.LOSS_PQ_STYLE,
        common.LOSS_MASK_ID_CROSS_ENTROPY,
        common.LOSS_INSTANCE_DISCRIMINATION,
    ):
        np.testing.assert_allclose(tripled[name].numpy(), 3 * final_only[name].numpy(), rtol=1e-5)
    switched_off = _build(deep_supervision=False)(_to_tf(targets), _to_tf(predictions))
    np.testing.assert_allclose(
        switched_off[common.LOSS_TOTAL].numpy(), final_only[common.LOSS_TOTAL].numpy(), rtol=1e-6
    )


def test_perfect_prediction_gives_near_zero_mask_terms():
    targets, predictions = _inputs(num_aux=0)
    predictions.update(clip_fixtures.make_perfect_predictions(targets))
    losses = _build()(_to_tf(targets), _to_tf(predictions))
    np.testing.assert_allclose(losses[common.LOSS_PQ_STYLE].numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(losses[common.LOSS_MASK_ID_CROSS_ENTROPY].numpy(), 0.0, atol=1e-5)


def test_gradients_are_finite_and_reach_every_prediction():
    targets, predictions = _inputs(num_aux=1)
    variables = tf.nest.map_structure(tf.Variable, predictions)
    loss = _build(instance_discrimination_sample_k=16, auxiliary_semantic_sample_k=16)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss(_to_tf(targets), variables)[common.LOSS_TOTAL])
    flat_variables = tf.nest.flatten(variables)
    for variable, grad in zip(flat_variables, tape.gradient(total, flat_variables), strict=True):
        assert grad is not None, variable.shape
        assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0), variable.shape


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_modes_equal_eager(jit_compile):
    targets, predictions = _inputs(num_aux=1)
    loss = _build()
    eager = loss(_to_tf(targets), _to_tf(predictions))
    graph = tf.function(loss.__call__, jit_compile=jit_compile)(
        _to_tf(targets), _to_tf(predictions)
    )
    _assert_losses_close(graph, {name: value.numpy() for name, value in eager.items()}, 1e-4)


def test_dynamic_batch_and_sampling_in_tf_function():
    targets, predictions = _inputs(num_aux=1)
    loss = _build(instance_discrimination_sample_k=24, auxiliary_semantic_sample_k=24)
    specs = tf.nest.map_structure(
        lambda array: tf.TensorSpec([None, *array.shape[1:]], tf.as_dtype(array.dtype)),
        (targets, predictions),
    )
    compute = tf.function(loss.__call__, input_signature=list(specs))
    losses = compute(_to_tf(targets), _to_tf(predictions))
    assert sorted(losses) == sorted(loss.get_loss_names())
    for value in losses.values():
        assert value.shape == (clip_fixtures.BATCH,) and np.all(np.isfinite(value.numpy()))


def test_half_precision_predictions_give_float32_losses():
    targets, predictions = _inputs(num_aux=1)
    loss = _build()
    reference = loss(_to_tf(targets), _to_tf(predictions))
    half = tf.nest.map_structure(lambda array: tf.constant(array, tf.float16), predictions)
    losses = loss(_to_tf(targets), half)
    _assert_losses_close(losses, {name: value.numpy() for name, value in reference.items()}, 2e-2)


def test_invalid_inputs_and_options_raise():
    targets, predictions = _inputs(num_aux=0)
    loss = _build()
    without_semantic = {
        key: value for key, value in predictions.items() if key != common.PRED_SEMANTIC_LOGITS
    }
    with pytest.raises(ValueError, match="auxiliary semantic head"):
        loss(_to_tf(targets), _to_tf(without_semantic))
    with pytest.raises(KeyError, match="tube_masks"):
        loss({}, _to_tf(predictions))
    wrong_classes = dict(predictions)
    wrong_classes[common.PRED_CLASS_LOGITS] = predictions[common.PRED_CLASS_LOGITS][..., :-1]
    with pytest.raises(ValueError, match="num_classes \\+ 1"):
        loss(_to_tf(targets), _to_tf(wrong_classes))
    wrong_stride = dict(predictions)
    wrong_stride[common.PRED_MASK_LOGITS] = predictions[common.PRED_MASK_LOGITS][:, :, :-1]
    with pytest.raises(ValueError, match="same stride"):
        loss(_to_tf(targets), _to_tf(wrong_stride))
    with pytest.raises(ValueError, match="pq_style_weight"):
        _build(pq_style_weight=-1.0)
    with pytest.raises(ValueError, match="top_k_percent"):
        _build(auxiliary_semantic_top_k_percent=0.0)
