"""Tests for deeplab_video/model/backbones/convnext.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video.model.backbones import convnext, factory
from deeplab_video.protos import model_pb2

# Same counts as DeepLab2 (64bc1c1) kMaX convnext_* (all weights trainable, no head).
_PARAMETERS = {
    "convnext_tiny": 27_818_592,
    "convnext_small": 49_453_152,
    "convnext_base": 87_564_416,
    "convnext_large": 196_227_264,
}


@pytest.mark.parametrize("name", sorted(_PARAMETERS))
def test_parameter_counts(name):
    # Built in a graph so that the initializers of ~200M weights never run.
    with tf.Graph().as_default():
        backbone = factory.build_backbone(model_pb2.BackboneOptions(name=name))
        backbone(tf.zeros([1, 65, 65, 3]), training=False)
        assert backbone.count_params() == _PARAMETERS[name]
        trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert trainable == _PARAMETERS[name]
    dims = convnext.CONVNEXT_SPECS[name][1]
    assert backbone.output_specs == {
        "res1": dims[0],
        **dict(zip(factory.ENDPOINTS, dims, strict=True)),
    }


def test_sizes_with_padding_for_downstream():
    backbone = convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
    odd = backbone(tf_keras.Input([65, 97, 3]))
    assert [odd[k].shape.as_list()[1:3] for k in factory.ENDPOINTS] == [
        [17, 25],
        [9, 13],
        [5, 7],
        [3, 4],
    ]
    even = backbone(tf_keras.Input([64, 30, 3]))
    assert [even[k].shape.as_list()[1:3] for k in factory.ENDPOINTS] == [
        [16, 8],
        [8, 4],
        [4, 2],
        [2, 1],
    ]


def test_drop_path_schedule_and_layer_scale():
    backbone = convnext.ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 8, 8, 8), drop_path_keep_prob=0.6)
    backbone(tf.zeros([1, 33, 33, 3]))
    blocks = [block for stage in backbone.stages for block in stage.layers]
    keep = [block.get_config()["drop_path_keep_prob"] for block in blocks]
    np.testing.assert_allclose(keep, [1.0, 0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    scales = [w for w in backbone.weights if "layer_scale" in w.name]
    assert len(scales) == 5
    np.testing.assert_allclose(scales[0].numpy(), np.full((1, 1, 1, 8), 1e-6), rtol=1e-6)


def test_block_is_near_identity_at_init():
    block = convnext.ConvNeXtBlock(16)
    x = tf.random.normal([1, 5, 5, 16])
    np.testing.assert_allclose(block(x), x, atol=1e-4)
    kernel = block.depthwise_conv.kernel
    assert tuple(kernel.shape) == (7, 7, 1, 16)  # Grouped convolution, DeepLab2's layout.


def test_jit_compiled_forward_matches_eager():
    backbone = convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), drop_path_keep_prob=0.5)
    x = tf.random.normal([2, 33, 49, 3])
    eager = backbone(x, training=False)
    compiled = tf.function(lambda t: backbone(t, training=False), jit_compile=True)(x)
    for name in factory.ENDPOINTS:
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-4, atol=1e-4)


def test_config_round_trips():
    backbone = convnext.ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 8, 16, 16), drop_path_keep_prob=0.5)
    config = backbone.get_config()
    assert convnext.ConvNeXt.from_config(config).get_config() == config
    block = convnext.ConvNeXtBlock(8, drop_path_keep_prob=0.7, name="convnext_block_0_0")
    config = block.get_config()
    assert convnext.ConvNeXtBlock.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="need 4 entries"):
        convnext.ConvNeXt(depths=(1, 1), dims=(8, 8))
