"""Builds Video-kMaX from `ExperimentOptions`: one typed `create_*` per component.

    model = build_model(opts)                        # training model, weights created
    model = build_model(opts, inference_only=True)   # what Table 3 counts and export serves

The batch-norm factory (sync or not, momentum, epsilon) is made once from the backbone
options and shared by every component. Layers follow the global Keras mixed-precision
policy that the caller sets before building.
"""

import tensorflow as tf
import tf_keras
from absl import logging

from deeplab_video.model import heads, pixel_decoder, transformer_decoder, video_kmax
from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import normalization
from deeplab_video.protos import config_pb2, model_pb2

# Width of the decoder layers' bottlenecks and attention values relative to
# TransformerDecoderOptions.bottleneck_channels (the attention keys): DeepLab2's
# bottleneck_expansion = value_expansion = 2.
VALUE_EXPANSION = 2
# Auxiliary semantic decoder (DeepLab2 kMaX configs): ASPP atrous rates, and projections of
# the stride-8 and stride-4 backbone features. Its ASPP, fusion and head widths are
# HeadOptions.head_channels (256 in DeepLab2, like the pixel-space head).
AUXILIARY_ATROUS_RATES = (6, 12, 18)
AUXILIARY_LOW_LEVEL_CHANNELS = (64, 32)
# Side of the dummy frames that create the weights (no weight depends on the input size).
_BUILD_SIZE = 65


def create_norm_layer(options: model_pb2.BackboneOptions) -> normalization.BatchNormFactory:
    """Returns the batch-norm factory every component shares.

    Raises:
        ValueError: batchnorm_momentum is outside [0, 1) or batchnorm_epsilon <= 0.
    """
    return normalization.from_backbone_options(options)


def create_backbone(
    options: model_pb2.ModelOptions, norm_layer: normalization.BatchNormFactory
) -> tf_keras.Model:
    """Creates the backbone `options.backbone.name`.

    Raises:
        KeyError: the backbone name is not registered.
        ValueError: invalid backbone options (e.g. drop_path_keep_prob outside (0, 1]).
    """
    return factory.build_backbone(options.backbone, norm_layer)


def create_pixel_decoder(
    options: model_pb2.ModelOptions,
    input_channels: dict[str, int],
    norm_layer: normalization.BatchNormFactory,
) -> tf_keras.layers.Layer:
    """Creates the kMaX pixel decoder on backbone features of `input_channels`.

    Raises:
        ValueError: invalid pixel-decoder options (lengths, block types, keep probability).
    """
    return pixel_decoder.KMaXPixelDecoder(
        options.pixel_decoder, input_channels, norm_layer=norm_layer, name="pixel_decoder"
    )


def create_transformer_decoder(
    options: model_pb2.ModelOptions,
    norm_layer: normalization.BatchNormFactory,
    deep_supervision: bool,
) -> transformer_decoder.KMaXTransformerDecoder:
    """Creates the clip-kMaX transformer decoder.

    Args:
        options: the model options (transformer_decoder, heads, num_classes).
        norm_layer: the shared batch-norm factory.
        deep_supervision: whether the decoder returns every layer's predictions.

    Raises:
        ValueError: unknown cross-attention, widths not divisible by num_heads, or
            num_layers_per_stage without three entries.
    """
    decoder = options.transformer_decoder
    return transformer_decoder.KMaXTransformerDecoder(
        num_classes=options.num_classes,
        num_queries=decoder.num_queries,
        num_layers_per_stage=tuple(decoder.num_layers_per_stage),
        query_channels=decoder.query_channels,
        key_channels=decoder.bottleneck_channels,
        value_channels=VALUE_EXPANSION * decoder.bottleneck_channels,
        ffn_channels=decoder.ffn_channels,
        num_heads=decoder.num_heads,
        cross_attention_kind=decoder.cross_attention,
        num_latent_memory=decoder.num_latent_memory,
        embedding_channels=options.heads.embedding_channels,
        head_channels=options.heads.head_channels,
        deep_supervision=deep_supervision,
        drop_path_keep_prob=decoder.drop_path_keep_prob,
        norm_layer=norm_layer,
        name="transformer_decoder",
    )


def create_prediction_head(
    options: model_pb2.ModelOptions, norm_layer: normalization.BatchNormFactory
) -> heads.KMaXPredictionHead:
    """Creates the final mask/class head on the stride-4 features.

    Raises:
        ValueError: num_classes or a head width is not positive.
    """
    return heads.KMaXPredictionHead(
        options.num_classes,
        embedding_channels=options.heads.embedding_channels,
        head_channels=options.heads.head_channels,
        norm_layer=norm_layer,
        name="prediction_head",
    )


def create_auxiliary_semantic_head(
    options: model_pb2.ModelOptions, norm_layer: normalization.BatchNormFactory
) -> heads.AuxiliarySemanticHead:
    """Creates the training-only auxiliary semantic decoder and head.

    Raises:
        ValueError: num_classes or head_channels is not positive.
    """
    width = options.heads.head_channels
    if min(options.num_classes, width) < 1:
        raise ValueError("num_classes and heads.head_channels must be positive")
    return heads.AuxiliarySemanticHead(
        options.num_classes,
        aspp_channels=width,
        atrous_rates=AUXILIARY_ATROUS_RATES,
        low_level_channels=AUXILIARY_LOW_LEVEL_CHANNELS,
        decoder_channels=width,
        head_channels=width,
        norm_layer=norm_layer,
        name="semantic_head",
    )


def build_model(opts: config_pb2.ExperimentOptions, inference_only: bool = False) -> tf_keras.Model:
    """Builds Video-kMaX and creates its weights.

    Args:
        opts: experiment options; model_options must have num_classes and filled repeated
            fields (`config.load_config` or `config.fill_repeated_defaults`).
        inference_only: leave out what only training needs: the auxiliary semantic head
            and the per-layer (deep-supervision) outputs.

    Returns:
        A built `video_kmax.VideoKMaX`: `model(clip, training=...)` maps float32
        [batch, T, H, W, 3] clips (0..255) to the prediction dict; `count_params()` and
        `checkpoint_items` work at once.

    Raises:
        ValueError: num_classes is not positive, or invalid component options.
        KeyError: unknown backbone.
    """
    options = opts.model_options
    if options.num_classes < 1:
        raise ValueError(f"model_options.num_classes must be positive, got {options.num_classes}")
    norm_layer = create_norm_layer(options.backbone)
    backbone = create_backbone(options, norm_layer)
    decoder = create_pixel_decoder(options, backbone.output_specs, norm_layer)
    deep_supervision = options.transformer_decoder.deep_supervision and not inference_only
    semantic_head = None
    if options.heads.auxiliary_semantic_head and not inference_only:
        semantic_head = create_auxiliary_semantic_head(options, norm_layer)
    model = video_kmax.VideoKMaX(
        backbone,
        decoder,
        create_transformer_decoder(options, norm_layer, deep_supervision),
        create_prediction_head(options, norm_layer),
        semantic_head,
        input_mean=options.input_mean,
        input_std=options.input_std,
    )
    model(tf.zeros([1, 1, _BUILD_SIZE, _BUILD_SIZE, 3]), training=False)
    logging.info(
        "Built Video-kMaX (%s, %s): %d parameters",
        options.backbone.name,
        "inference" if inference_only else "training",
        model.count_params(),
    )
    return model
