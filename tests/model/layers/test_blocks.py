"""Tests for deeplab_video/model/layers/blocks.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import blocks, normalization

_NORM = normalization.BatchNormFactory(False, 0.99, 1e-3)


def _has(layer, name):
    return any(f"/{name}/" in w.name for w in layer.weights)


@pytest.mark.parametrize("block_class", [blocks.BottleneckBlock, blocks.AxialBlock])
def test_block_starts_as_its_shortcut(block_class):
    # The last batch norm has gamma 0, so a fresh block returns activated input.
    block = block_class(8, activation="relu", norm_layer=_NORM)
    x = tf.random.normal([2, 5, 7, 32])
    np.testing.assert_allclose(block(x, training=False), tf.nn.relu(x), atol=1e-6)
    assert not _has(block, "shortcut")


@pytest.mark.parametrize("block_class", [blocks.BottleneckBlock, blocks.AxialBlock])
def test_strided_block_shapes_and_projection(block_class):
    block = block_class(8, strides=2, activation="gelu", norm_layer=_NORM)
    y = block(tf_keras.Input([65, 33, 16]))
    assert y.shape.as_list() == [None, 33, 17, 32]
    assert _has(block, "shortcut")


def test_strided_identity_shortcut_subsamples():
    block = blocks.BottleneckBlock(4, strides=2, activation="relu", norm_layer=_NORM)
    x = tf.random.normal([1, 9, 9, 16])
    np.testing.assert_allclose(block(x), tf.nn.relu(x)[:, ::2, ::2], atol=1e-6)


def test_axial_block_widths():
    block = blocks.AxialBlock(8, num_heads=4, norm_layer=_NORM)
    block(tf.zeros([1, 3, 3, 32]))
    shapes = {w.name.split("/", 1)[1]: tuple(w.shape) for w in block.weights}
    assert shapes["conv1_bn_act/conv/kernel:0"] == (1, 1, 32, 16)
    assert shapes["attention/height_axis/qkv_kernel:0"] == (16, 8 + 8 + 16)
    assert shapes["conv3_bn/conv/kernel:0"] == (1, 1, 16, 32)


def test_bottleneck_atrous_rate_is_used():
    block = blocks.BottleneckBlock(4, atrous_rate=2, norm_layer=_NORM)
    block(tf.zeros([1, 9, 9, 16]))
    conv = block._conv2_bn_act._conv
    assert conv.dilation_rate == (2, 2)


def test_block_group_plan():
    group = blocks.BlockGroup(
        4,
        [blocks.BOTTLENECK, blocks.AXIAL, blocks.AXIAL],
        strides=2,
        drop_path_keep_probs=[1.0, 0.9, 0.8],
        axial_num_heads=4,
        norm_layer=_NORM,
        name="stage4",
    )
    y = group(tf.random.normal([2, 9, 9, 8]), training=True)
    assert y.shape == (2, 5, 5, 16)
    assert group.output_channels == 16
    names = {w.name.split("/")[1] for w in group.weights}
    assert names == {"block1", "block2", "block3"}
    assert not _has(group._block1, "attention")
    assert _has(group._block2, "attention")
    assert _has(group._block1, "shortcut") and not _has(group._block2, "shortcut")


def test_block_group_gradients_reach_every_weight():
    group = blocks.BlockGroup(
        4, [blocks.AXIAL, blocks.BOTTLENECK], axial_num_heads=2, norm_layer=_NORM
    )
    x = tf.random.normal([2, 5, 5, 8])
    group(x)
    for weight in group.trainable_weights:  # Undo the zero gammas so branches matter.
        if "gamma" in weight.name:
            weight.assign(tf.ones_like(weight))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(group(x, training=True) ** 2)
    grads = tape.gradient(loss, group.trainable_weights)
    for weight, grad in zip(group.trainable_weights, grads, strict=True):
        assert grad is not None and np.any(tf.convert_to_tensor(grad).numpy() != 0), weight.name


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(block_types=[]), "at least one block"),
        (dict(block_types=["conv"]), "unknown block types"),
        (dict(block_types=["axial"], drop_path_keep_probs=[1.0, 1.0]), "2 drop path"),
        (dict(block_types=["bottleneck"], strides=2, atrous_rate=2), "cannot also dilate"),
    ],
)
def test_block_group_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        blocks.BlockGroup(8, **kwargs)


def test_config_round_trips():
    group = blocks.BlockGroup(
        8,
        [blocks.AXIAL, blocks.BOTTLENECK],
        strides=1,
        atrous_rate=2,
        drop_path_keep_probs=[0.9, 0.8],
        activation="gelu",
        axial_num_heads=4,
        axial_max_span=65,
        norm_layer=_NORM,
        name="stage_os32",
    )
    config = group.get_config()
    assert blocks.BlockGroup.from_config(config).get_config() == config
    for block in (
        blocks.BottleneckBlock(8, atrous_rate=2, strides=1, norm_layer=_NORM),
        blocks.AxialBlock(8, num_heads=4, max_span=9, drop_path_keep_prob=0.5),
    ):
        config = block.get_config()
        assert type(block).from_config(config).get_config() == config
