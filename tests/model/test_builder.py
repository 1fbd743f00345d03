"""Tests of the model builder: parameter counts of the paper's models, options, errors."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common, config
from deeplab_video.model import builder
from deeplab_video.protos import config_pb2
from tests import conftest

# Table 3 of the Video-kMaX supplementary: parameters of the inference networks (KITTI-STEP,
# 19 classes), in millions, and our exact counts. The paper counts trainable weights; with
# the batch-norm moving statistics (`count_params()`) our counts equal DeepLab2's.
_PAPER_MILLIONS = {"resnet50": 56.4, "axial_resnet50": 74.2, "convnext_large": 231.6}
_TRAINABLE = {"resnet50": 56_375_034, "axial_resnet50": 74_210_426, "convnext_large": 231_631_866}
_ALL = {"resnet50": 56_582_440, "axial_resnet50": 74_509_096, "convnext_large": 231_790_248}
_TINY_CONFIG = conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto"


def _options(backbone: str, num_classes: int = 19) -> config_pb2.ExperimentOptions:
    options = config_pb2.ExperimentOptions()
    options.model_options.num_classes = num_classes
    options.model_options.backbone.name = backbone
    config.fill_repeated_defaults(options)
    return options


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _check_counts(backbone: str) -> None:
    model = builder.build_model(_options(backbone), inference_only=True)
    assert _trainable(model) == pytest.approx(_PAPER_MILLIONS[backbone] * 1e6, rel=0.01)
    assert _trainable(model) == _TRAINABLE[backbone]
    assert model.count_params() == _ALL[backbone]


def test_resnet50_matches_table3():
    _check_counts("resnet50")


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["axial_resnet50", "convnext_large"])
def test_other_backbones_match_table3(backbone):
    _check_counts(backbone)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, num_classes, inference, training",
    [
        # DeepLab2's measured totals: 56.58M / 74.51M / 232.0M (COCO, 133 classes).
        ("resnet50", 19, 56_582_440, 72_416_155),
        ("axial_resnet50", 19, 74_509_096, 90_342_811),
        ("convnext_large", 133, 231_995_334, 244_047_019),
    ],
)
def test_training_models_add_the_semantic_head(backbone, num_classes, inference, training):
    options = _options(backbone, num_classes)
    assert builder.build_model(options, inference_only=True).count_params() == inference
    model = builder.build_model(options)
    assert model.count_params() == training
    assert model.checkpoint_items["semantic_head"].count_params() == training - inference


def test_semantic_head_of_resnet50():
    model_options = _options("resnet50").model_options
    norm_layer = builder.create_norm_layer(model_options.backbone)
    head = builder.create_auxiliary_semantic_head(model_options, norm_layer)
    head(tf.zeros([1, 3, 3, 2048]), [tf.zeros([1, 5, 5, 512]), tf.zeros([1, 9, 9, 256])])
    # The training ResNet-50 model (72,416,155) is the inference one plus this head.
    assert head.count_params() == 72_416_155 - 56_582_440


def test_tiny_models_and_options():
    options = config.load_config(_TINY_CONFIG)
    training = builder.build_model(options)
    inference = builder.build_model(options, inference_only=True)
    assert inference.built and training.built
    semantic = training.checkpoint_items["semantic_head"].count_params()
    assert training.count_params() == inference.count_params() + semantic

    options.model_options.transformer_decoder.deep_supervision = False
    options.model_options.heads.auxiliary_semantic_head = False
    outputs = builder.build_model(options)(tf.zeros([1, 2, 33, 33, 3]), training=True)
    assert common.PRED_AUX_OUTPUTS not in outputs
    assert common.PRED_SEMANTIC_LOGITS not in outputs


def test_errors():
    with pytest.raises(ValueError, match="num_classes must be positive"):
        builder.build_model(_options("resnet50", num_classes=0))
    with pytest.raises(KeyError, match="unknown backbone 'vgg16'"):
        builder.build_model(_options("vgg16"))
    options = config.load_config(_TINY_CONFIG)
    options.model_options.transformer_decoder.cross_attention = "dot"
    with pytest.raises(ValueError, match="unknown cross-attention 'dot'"):
        builder.build_model(options)
    model_options = config.load_config(_TINY_CONFIG).model_options
    model_options.transformer_decoder.num_heads = 3
    norm_layer = builder.create_norm_layer(model_options.backbone)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        builder.create_transformer_decoder(model_options, norm_layer, deep_supervision=True)
