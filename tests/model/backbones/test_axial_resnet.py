"""Tests for deeplab_video/model/backbones/axial_resnet.py."""

import numpy as np
import tensorflow as tf

from deeplab_video.model.backbones import factory
from deeplab_video.protos import model_pb2


def test_parameter_count_of_axial_resnet50():
    # DeepLab2 (64bc1c1) kMaX axial_resnet50 has the same counts. They do not depend on the
    # input size: the relative-position tables always have 2 * 255 - 1 rows.
    backbone = factory.build_backbone(model_pb2.BackboneOptions(name="axial_resnet50"))
    backbone(tf.zeros([1, 65, 65, 3]), training=False)
    assert backbone.count_params() == 41_487_808
    assert sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) == 41_343_424
    assert backbone.output_specs == {
        "res1": 128,
        "res2": 256,
        "res3": 512,
        "res4": 1024,
        "res5": 2048,
    }


def test_max_s_structure():
    options = model_pb2.BackboneOptions(
        name="axial_resnet50",
        width_multiplier=0.125,
        depth_multiplier=0.5,
        drop_path_keep_prob=0.6,
    )
    backbone = factory.build_backbone(options)
    backbone(tf.zeros([1, 33, 33, 3]))
    config = backbone.get_config()
    assert config["stem"] == "inception" and config["activation"] == "gelu"
    kernels = [
        tuple(w.shape)
        for w in backbone.weights
        if w.name.startswith("axial_resnet50/stem") and "kernel" in w.name
    ]
    assert kernels == [(3, 3, 3, 8), (3, 3, 8, 8), (3, 3, 8, 16)]
    stages = {k: getattr(backbone, f"_stage{k}").get_config() for k in (2, 3, 4, 5)}
    assert set(stages[2]["block_types"]) == set(stages[3]["block_types"]) == {"bottleneck"}
    assert stages[4]["block_types"] == ["bottleneck", "axial", "axial"]
    assert stages[5]["block_types"] == ["axial", "axial"]
    # Linear schedule over strides 16 (stage 3 of 4) and 32, only at stride >= 16.
    np.testing.assert_allclose(stages[4]["drop_path_keep_probs"], [1.0, 0.7, 0.7])
    np.testing.assert_allclose(stages[5]["drop_path_keep_probs"], [0.7, 0.6])
    assert stages[3]["drop_path_keep_probs"] == [1.0, 1.0]
