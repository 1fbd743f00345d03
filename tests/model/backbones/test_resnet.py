"""Tests for deeplab_video/model/backbones/resnet.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model.backbones import factory, resnet
from deeplab_video.model.layers import blocks, normalization
from deeplab_video.protos import model_pb2

_NORM = normalization.BatchNormFactory(False, 0.99, 1e-3)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_parameter_count_of_resnet50():
    # DeepLab2 (64bc1c1) kMaX resnet50 has the same counts: 23,561,152 weights of which
    # 23,508,032 trainable (ResNet-50 without the classifier, no convolution biases).
    backbone = factory.build_backbone(model_pb2.BackboneOptions(name="resnet50"))
    backbone(tf.zeros([1, 65, 65, 3]), training=False)
    assert backbone.count_params() == 23_561_152
    assert _count(backbone.trainable_weights) == 23_508_032
    assert backbone.output_specs == {
        "res1": 64,
        "res2": 256,
        "res3": 512,
        "res4": 1024,
        "res5": 2048,
    }


def test_block_plan_by_hand():
    # Stage 4 of ResNet-50 (input stride 8): the first block runs at stride 8, the rest at
    # 16 = schedule stage 3 of 4, keep 1 - 0.2 * 3 / 4 = 0.85.
    types, keep = resnet.block_plan(6, 8, 0, 0.8)
    assert types == [blocks.BOTTLENECK] * 6
    np.testing.assert_allclose(keep, [1.0] + [0.85] * 5)
    # Stage 5 (input stride 16): first block at 16, the others at 32 = the last stage.
    types, keep = resnet.block_plan(3, 16, 16, 0.8)
    assert types == [blocks.AXIAL] * 3
    np.testing.assert_allclose(keep, [0.85, 0.8, 0.8])
    # Axial from stride 16 on: the first block of stage 4 is still a bottleneck.
    types, keep = resnet.block_plan(2, 8, 16, 1.0)
    assert types == [blocks.BOTTLENECK, blocks.AXIAL]
    assert keep == [1.0, 1.0]
    assert resnet.block_plan(3, 2, 16, 0.5)[1] == [1.0, 1.0, 1.0]


def test_structure_follows_deeplab2():
    backbone = resnet.ResNet(
        num_blocks=(1, 1, 1, 1), filters=(8, 8, 16, 16), stem_channels=8, norm_layer=_NORM
    )
    features = backbone(tf.zeros([1, 33, 33, 3]))
    kernels = {w.name.split(":")[0]: tuple(w.shape) for w in backbone.weights if "kernel" in w.name}
    # 7x7/2 stem with batch norm and no max pooling: the stage-2 block strides instead.
    assert kernels["resnet/stem/conv/kernel"] == (7, 7, 3, 8)
    assert features["res2"].shape == (1, 9, 9, 32)
    assert backbone._stage2.get_config()["strides"] == 2
    # Zero-initialised last batch norm of every residual branch.
    gammas = [w for w in backbone.weights if "conv3_bn/batch_norm/gamma" in w.name]
    assert len(gammas) == 4 and all(np.all(w.numpy() == 0) for w in gammas)


def _tiny_backbone():
    options = model_pb2.BackboneOptions(
        name="resnet50", width_multiplier=0.125, depth_multiplier=0.34, use_sync_batchnorm=False
    )
    return factory.build_backbone(options)


def test_tiny_widths_and_depths():
    backbone = _tiny_backbone()
    assert backbone.output_specs == {"res1": 8, "res2": 32, "res3": 64, "res4": 128, "res5": 256}
    config = backbone.get_config()
    assert config["num_blocks"] == [1, 1, 2, 1]
    assert config["stem_channels"] == 8


def test_gradients_reach_every_weight():
    backbone = _tiny_backbone()
    x = tf.random.normal([2, 33, 33, 3])
    backbone(x)
    for weight in backbone.trainable_weights:  # Undo the zero gammas so branches matter.
        if "gamma" in weight.name:
            weight.assign(tf.ones_like(weight))
    with tf.GradientTape() as tape:
        features = backbone(x, training=True)
        loss = sum(tf.reduce_sum(f**2) for f in features.values())
    grads = tape.gradient(loss, backbone.trainable_weights)
    for weight, grad in zip(backbone.trainable_weights, grads, strict=True):
        assert grad is not None and np.any(grad.numpy() != 0), weight.name


def test_config_round_trip_and_validation():
    backbone = _tiny_backbone()
    config = backbone.get_config()
    assert resnet.ResNet.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="unknown stem 'deep'"):
        resnet.ResNet(stem="deep")
    with pytest.raises(ValueError, match="need 4 entries"):
        resnet.ResNet(num_blocks=(3, 4, 6))
    with pytest.raises(ValueError, match="keep probability"):
        resnet.ResNet(drop_path_keep_prob=0.0)


def test_even_input_sizes_round_up():
    features = _tiny_backbone()(tf_keras.Input([64, 30, 3]))
    assert features["res5"].shape.as_list() == [None, 2, 1, 256]
    assert features["res2"].shape.as_list() == [None, 16, 8, 32]
