"""Tests for deeplab_video.trainer.optimizer: schedule, decay mask, multipliers, clipping."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video import config
from deeplab_video.model import builder
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import optimizer as optimizer_lib
from tests import conftest


def _solver(**fields) -> config_pb2.SolverOptions:
    solver = config_pb2.SolverOptions(
        base_learning_rate=0.1,
        warmup_steps=10,
        training_number_of_steps=110,
        poly_learning_power=0.9,
        weight_decay=0.05,
        backbone_learning_rate_multiplier=0.1,
    )
    for name, value in fields.items():
        setattr(solver, name, value)
    return solver


def _two_part_model():
    """A 'backbone' Dense and a 'head' Dense + LayerNorm; returns (model, backbone)."""
    backbone = tf_keras.layers.Dense(3, name="backbone_dense")
    head = tf_keras.layers.Dense(2, name="head_dense")
    norm = tf_keras.layers.LayerNormalization(name="head_norm")
    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, norm(head(backbone(inputs))))
    return model, backbone


def test_schedule_values_at_warmup_mid_and_end():
    schedule = optimizer_lib.build_learning_rate_schedule(_solver(poly_end_learning_rate=0.001))
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(5)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 0.1, rtol=1e-6)
    # Half-way through the decay: (0.1 - 0.001) * 0.5 ** 0.9 + 0.001.
    np.testing.assert_allclose(float(schedule(60)), 0.099 * 0.5**0.9 + 0.001, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(110)), 0.001, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(500)), 0.001, rtol=1e-6)
    assert float(schedule(tf.constant(9, tf.int64))) < float(schedule(10))


def test_schedule_without_warmup_starts_at_base_rate():
    schedule = optimizer_lib.build_learning_rate_schedule(_solver(warmup_steps=0))
    np.testing.assert_allclose(float(schedule(0)), 0.1, rtol=1e-6)


def test_schedule_rejects_warmup_longer_than_training():
    with pytest.raises(ValueError, match="warmup_steps"):
        optimizer_lib.WarmupPolyDecay(0.1, warmup_steps=20, total_steps=20, power=0.9)


def test_weight_decay_only_on_kernels():
    model, backbone = _two_part_model()
    # Warm-up disabled so the first step uses the base rate exactly.
    opt = optimizer_lib.build_optimizer(
        _solver(warmup_steps=0), model.trainable_variables, backbone.trainable_variables
    )
    for v in model.trainable_variables:
        v.assign(tf.ones_like(v) * 2.0)
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    # Zero gradients: Adam's own update is 0, so only decoupled decay moves variables.
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    for v in model.trainable_variables:
        rate = 0.1 * (0.1 if "backbone" in v.name else 1.0)
        if v.name.endswith("kernel:0"):
            expected = before[v.name] * (1 - rate * 0.05)
        else:
            expected = before[v.name]
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.name)
    names = {v.name for v in model.trainable_variables if optimizer_lib.is_weight_decayed(v)}
    assert names == {"backbone_dense/kernel:0", "head_dense/kernel:0"}


def test_adam_and_sgd_have_no_weight_decay():
    for name in ("adam", "sgd"):
        model, backbone = _two_part_model()
        opt = optimizer_lib.build_optimizer(
            _solver(optimizer=name, warmup_steps=0), model.trainable_variables
        )
        before = [v.numpy().copy() for v in model.trainable_variables]
        opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
        for v, old in zip(model.trainable_variables, before, strict=True):
            np.testing.assert_allclose(v.numpy(), old, err_msg=f"{name} {v.name}")


def test_backbone_multiplier_with_sgd_is_exact():
    model, backbone = _two_part_model()
    opt = optimizer_lib.build_optimizer(
        _solver(optimizer="sgd", warmup_steps=0, sgd_momentum=0.0),
        model.trainable_variables,
        backbone.trainable_variables,
    )
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_variables])
    for v, old in zip(model.trainable_variables, before, strict=True):
        rate = 0.1 * (0.1 if v.name.startswith("backbone") else 1.0)
        np.testing.assert_allclose(old - v.numpy(), rate, rtol=1e-5, err_msg=v.name)
    # The logged rate is the base schedule at the next step, independent of the groups.
    np.testing.assert_allclose(
        float(optimizer_lib.current_learning_rate(opt)), 0.1 * (1 - 1 / 110) ** 0.9, rtol=1e-6
    )


def test_backbone_multiplier_with_adam():
    model, backbone = _two_part_model()
    opt = optimizer_lib.build_optimizer(
        _solver(optimizer="adam", warmup_steps=0),
        model.trainable_variables,
        backbone.trainable_variables,
    )
    before = [v.numpy().copy() for v in model.trainable_variables]
    grads = [tf.fill(tf.shape(v), 3.0) for v in model.trainable_variables]
    opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    for v, old in zip(model.trainable_variables, before, strict=True):
        # The first Adam step moves every weight by lr * g / (|g| + eps) ~ lr.
        rate = 0.1 * (0.1 if v.name.startswith("backbone") else 1.0)
        np.testing.assert_allclose(old - v.numpy(), rate, rtol=1e-4, err_msg=v.name)


def test_global_norm_clipping():
    variable = tf.Variable([0.0, 0.0])
    opt = optimizer_lib.build_optimizer(
        _solver(optimizer="sgd", warmup_steps=0, sgd_momentum=0.0, gradient_clip_norm=1.0),
        [variable],
    )
    opt.apply_gradients([(tf.constant([30.0, 40.0]), variable)])
    # The gradient of norm 50 is clipped to norm 1, then scaled by lr 0.1.
    np.testing.assert_allclose(variable.numpy(), [-0.06, -0.08], rtol=1e-5)


def test_schedule_follows_iterations():
    variable = tf.Variable([0.0])
    opt = optimizer_lib.build_optimizer(_solver(optimizer="sgd"), [variable])
    for _ in range(5):
        opt.apply_gradients([(tf.constant([1.0]), variable)])
    assert int(opt.iterations) == 5
    np.testing.assert_allclose(float(optimizer_lib.current_learning_rate(opt)), 0.05, rtol=1e-6)


def test_mixed_precision_wrapping():
    variable = tf.Variable([0.0])
    fp16 = optimizer_lib.build_optimizer(_solver(), [variable], mixed_precision="mixed_float16")
    assert isinstance(fp16, tf_keras.mixed_precision.LossScaleOptimizer)
    assert isinstance(optimizer_lib.inner_optimizer(fp16), optimizer_lib.GroupedAdam)
    bf16 = optimizer_lib.build_optimizer(_solver(), [variable], mixed_precision="mixed_bfloat16")
    assert isinstance(bf16, optimizer_lib.GroupedAdam)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizer_lib.build_optimizer(_solver(optimizer="rmsprop"), [])


@pytest.mark.slow
def test_decay_mask_and_groups_on_video_kmax():
    options = config.load_config(conftest.CONFIG_DIR / "synthetic/tiny_online.textproto")
    model = builder.build_model(options)
    backbone = model.checkpoint_items["backbone"].trainable_variables
    opt = optimizer_lib.build_optimizer(_solver(), model.trainable_variables, backbone, "float32")
    decayed = {v.name for v in model.trainable_variables if optimizer_lib.is_weight_decayed(v)}
    for v in model.trainable_variables:
        leaf = v.name.rsplit("/", 1)[-1]
        # kMaX-DeepLab: only convolution / dense kernels; never norms, biases, the query
        # cluster centres or relative positional embeddings.
        assert (v.name in decayed) == leaf.endswith("kernel:0"), v.name
    assert any("cluster_centers" in v.name for v in model.trainable_variables)
    multipliers = {opt._var_key(v) for v in backbone}
    assert len(multipliers) == len(backbone) > 0
    assert all("backbone" in v.name or "resnet" in v.name for v in backbone)
