"""Prediction heads of Video-kMaX: the mask/class head and the auxiliary semantic head.

`KMaXPredictionHead` (DeepLab2 `model/decoder/max_deeplab.py`, kMaX-DeepLab [1]) turns pixel
features and query features into predictions:
- a pixel-space head (5x5 depthwise + 1x1 convolutions, a 1x1 projection to
  embedding_channels and a batch norm) gives L2-normalised pixel embeddings;
- a mask head (1x1 convolution + batch norm) gives one embedding (mask kernel) per query;
- mask logits are the dot products of query and pixel embeddings, batch-normalised with a
  single scale shared by all queries (initialised at 0.1);
- a class head (1x1 convolution with bias) gives num_classes + 1 logits per query, the last
  one void, biased at initialisation towards void (probability `void_prior_prob`).
The transformer decoder uses one such head per layer (for the k-means assignment and deep
supervision) and the model one more on the stride-4 features for its final predictions.

`AuxiliarySemanticHead` is kMaX-DeepLab's training-only semantic branch (a Panoptic-DeepLab
single decoder [2] and head): ASPP on the stride-32 backbone features, fused with projected
stride-8 and stride-4 backbone features, then a depthwise-separable head.

[1] k-means Mask Transformer, ECCV 2022. Qihang Yu, Huiyu Wang, Siyuan Qiao, Maxwell Collins,
    Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
[2] Panoptic-DeepLab: A Simple, Strong, and Fast Baseline for Bottom-Up Panoptic
    Segmentation, CVPR 2020. Bowen Cheng, Maxwell D. Collins, Yukun Zhu, Ting Liu,
    Thomas S. Huang, Hartwig Adam, Liang-Chieh Chen.
"""

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video import common
from deeplab_video.model.layers import (
    aspp,
    convolutions,
    cross_attention,
    normalization,
    resizing,
    separable_conv,
)

# Activation of every hidden layer of the heads (kMaX-DeepLab uses GELU throughout).
ACTIVATION = "gelu"
# Initial scale (batch-norm gamma) of the mask logits (DeepLab2 and Video-kMaX: 0.1).
MASK_LOGITS_INITIAL_SCALE = 0.1


def void_bias(num_classes_with_void: int, void_prior_prob: float) -> list[float]:
    """Constant added to the class logits so that void starts with `void_prior_prob`.

    Args:
        num_classes_with_void: number of class logits, void last.
        void_prior_prob: softmax probability of void when all other logits are equal.

    Returns:
        num_classes_with_void floats: zeros, then log((C - 1) * p / (1 - p)) for void.
    """
    bias = [0.0] * num_classes_with_void
    bias[-1] = math.log((num_classes_with_void - 1) * void_prior_prob / (1.0 - void_prior_prob))
    return bias


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class KMaXPredictionHead(tf_keras.layers.Layer):
    """Mask logits, class logits and embeddings from pixel and query features.

    Sublayers: `pixel_space_head` (SeparableConvBN to head_channels), `pixel_space_projection`
    (1x1 with bias), `pixel_space_feature_batch_norm`, `transformer_mask_head`,
    `transformer_class_head`, `pixel_space_mask_batch_norm`.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_channels: int = 128,
        head_channels: int = 256,
        void_prior_prob: float = 0.9,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            num_classes: number of semantic classes, without void.
            embedding_channels: width D of pixel and query embeddings.
            head_channels: hidden width of the pixel-space head.
            void_prior_prob: initial probability of the void class (DeepLab2: 0.9).
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: a count is not positive or void_prior_prob is outside (0, 1).
        """
        super().__init__(**kwargs)
        if min(num_classes, embedding_channels, head_channels) < 1:
            raise ValueError(f"{self.name}: num_classes and widths must be positive")
        if not 0.0 < void_prior_prob < 1.0:
            raise ValueError(f"{self.name}: void_prior_prob must be in (0, 1)")
        self._num_classes = num_classes
        self._embedding_channels = embedding_channels
        self._head_channels = head_channels
        self._void_prior_prob = void_prior_prob
        self._norm_layer = normalization.resolve(norm_layer)
        self._pixel_space_head = separable_conv.SeparableConvBN(
            head_channels, norm_layer=self._norm_layer, name="pixel_space_head"
        )
        self._pixel_space_projection = convolutions.Conv2DSame(
            embedding_channels, kernel_size=1, name="pixel_space_projection", use_bias=True
        )
        self._pixel_space_feature_batch_norm = self._norm_layer(
            axis=-1, name="pixel_space_feature_batch_norm"
        )
        self._transformer_mask_head = convolutions.Conv2DSame(
            embedding_channels,
            kernel_size=1,
            name="transformer_mask_head",
            use_bias=False,
            use_bn=True,
            norm_layer=self._norm_layer,
        )
        self._transformer_class_head = convolutions.Conv2DSame(
            num_classes + 1,
            kernel_size=1,
            name="transformer_class_head",
            use_bias=True,
            kernel_initializer={"class_name": "TruncatedNormal", "config": {"stddev": 0.01}},
        )
        self._pixel_space_mask_batch_norm = self._norm_layer(
            axis=-1,
            name="pixel_space_mask_batch_norm",
            gamma_initializer=tf_keras.initializers.Constant(MASK_LOGITS_INITIAL_SCALE),
        )
        self._void_bias = void_bias(num_classes + 1, void_prior_prob)

    def call(
        self,
        pixel_features: tf.Tensor,
        class_features: tf.Tensor,
        mask_features: tf.Tensor,
        training: bool | None = None,
    ) -> dict[str, tf.Tensor]:
        """Predicts masks over every frame of the clip and a class per query.

        Args:
            pixel_features: float [batch, num_frames, height, width, channels].
            class_features: float [batch, num_queries, query_channels].
            mask_features: float [batch, num_queries, query_channels].
            training: whether batch norms use batch statistics.

        Returns:
            A dict (compute dtype) with
            common.PRED_MASK_LOGITS [batch, num_frames, height, width, num_queries],
            common.PRED_CLASS_LOGITS [batch, num_queries, num_classes + 1],
            common.PRED_QUERY_EMBEDDINGS [batch, num_queries, embedding_channels],
            common.PRED_PIXEL_FEATURES [batch, num_frames, height, width,
            embedding_channels] (L2-normalised).
        """
        shape = tf.shape(pixel_features)
        frames = tf.reshape(pixel_features, tf.concat([[-1], shape[2:]], 0))
        frames.set_shape([None, *pixel_features.shape[2:]])
        x = self._pixel_space_head(frames, training=training)
        x = self._pixel_space_projection(x)
        x = self._pixel_space_feature_batch_norm(x, training=training)
        x = tf.math.l2_normalize(x, axis=-1)
        pixel_embeddings = tf.reshape(x, tf.concat([shape[:4], [self._embedding_channels]], 0))
        query_embeddings = cross_attention.pointwise(
            self._transformer_mask_head, mask_features, training
        )
        mask_logits = tf.einsum("bthwd,bnd->bthwn", pixel_embeddings, query_embeddings)
        # The norm's one channel is a new last axis (expand_dims and squeeze, not a 6-D
        # slice, which TFLite has no builtin op for).
        mask_logits = self._pixel_space_mask_batch_norm(
            tf.expand_dims(mask_logits, -1), training=training
        )
        class_logits = cross_attention.pointwise(self._transformer_class_head, class_features, None)
        class_logits += tf.constant(self._void_bias, dtype=class_logits.dtype)
        return {
            common.PRED_MASK_LOGITS: tf.squeeze(mask_logits, -1),
            common.PRED_CLASS_LOGITS: class_logits,
            common.PRED_QUERY_EMBEDDINGS: query_embeddings,
            common.PRED_PIXEL_FEATURES: pixel_embeddings,
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self._num_classes,
            embedding_channels=self._embedding_channels,
            head_channels=self._head_channels,
            void_prior_prob=self._void_prior_prob,
            norm_layer=self._norm_layer.get_config(),
        )
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class AuxiliarySemanticHead(tf_keras.layers.Layer):
    """kMaX-DeepLab's auxiliary semantic decoder and head (training only).

    Sublayers: `aspp`; per low-level feature i, `low_level_projection{i}` (1x1) and
    `low_level_fusion{i}` (SeparableConvBN); `conv_block` (SeparableConvBN) and `final_conv`.
    """

    def __init__(
        self,
        num_classes: int,
        aspp_channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        aspp_dropout_rate: float = 0.1,
        low_level_channels: Sequence[int] = (64, 32),
        decoder_channels: int = 256,
        head_channels: int = 256,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            num_classes: number of semantic logits per pixel.
            aspp_channels: width of the ASPP.
            atrous_rates: dilation rates of the ASPP.
            aspp_dropout_rate: dropout after the ASPP projection.
            low_level_channels: projection width of each low-level feature, from the
                coarsest (stride 8) to the finest (stride 4).
            decoder_channels: width of every fusion.
            head_channels: hidden width of the head.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._num_classes = num_classes
        self._aspp_channels = aspp_channels
        self._atrous_rates = tuple(int(rate) for rate in atrous_rates)
        self._aspp_dropout_rate = aspp_dropout_rate
        self._low_level_channels = tuple(int(c) for c in low_level_channels)
        self._decoder_channels = decoder_channels
        self._head_channels = head_channels
        self._norm_layer = normalization.resolve(norm_layer)
        self._aspp = aspp.ASPP(
            aspp_channels, atrous_rates, aspp_dropout_rate, norm_layer=self._norm_layer, name="aspp"
        )
        self._projections = [
            convolutions.Conv2DSame(
                channels,
                kernel_size=1,
                name=f"low_level_projection{index}",
                use_bias=False,
                use_bn=True,
                norm_layer=self._norm_layer,
                activation=ACTIVATION,
            )
            for index, channels in enumerate(self._low_level_channels)
        ]
        self._fusions = [
            separable_conv.SeparableConvBN(
                decoder_channels, norm_layer=self._norm_layer, name=f"low_level_fusion{index}"
            )
            for index in range(len(self._low_level_channels))
        ]
        self._conv_block = separable_conv.SeparableConvBN(
            head_channels, norm_layer=self._norm_layer, name="conv_block"
        )
        self._final_conv = convolutions.Conv2DSame(
            num_classes,
            kernel_size=1,
            name="final_conv",
            use_bias=True,
            kernel_initializer={"class_name": "TruncatedNormal", "config": {"stddev": 0.01}},
        )

    def call(
        self,
        high_level_features: tf.Tensor,
        low_level_features: Sequence[tf.Tensor],
        training: bool | None = None,
    ) -> tf.Tensor:
        """Predicts semantic logits at the resolution of the finest low-level feature.

        Args:
            high_level_features: float [batch, h32, w32, channels] (backbone stride 32).
            low_level_features: one float [batch, h_s, w_s, channels_s] per
                low_level_channels entry, coarsest first (backbone strides 8 and 4).
            training: whether batch norms and dropout run in training mode.

        Returns:
            float [batch, h_finest, w_finest, num_classes].

        Raises:
            ValueError: the number of low-level features differs from low_level_channels.
        """
        if len(low_level_features) != len(self._projections):
            raise ValueError(
                f"{self.name}: expected {len(self._projections)} low-level features, got "
                f"{len(low_level_features)}"
            )
        x = self._aspp(high_level_features, training=training)
        for projection, fusion, low_level in zip(
            self._projections, self._fusions, low_level_features, strict=True
        ):
            low_level = projection(low_level, training=training)
            size = (tf.shape(low_level)[1], tf.shape(low_level)[2])
            if low_level.shape[1] is not None and low_level.shape[2] is not None:
                size = (low_level.shape[1], low_level.shape[2])
            x = resizing.resize_align_corners(x, size)
            x = fusion(tf.concat([x, low_level], axis=-1), training=training)
        return self._final_conv(self._conv_block(x, training=training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self._num_classes,
            aspp_channels=self._aspp_channels,
            atrous_rates=self._atrous_rates,
            aspp_dropout_rate=self._aspp_dropout_rate,
            low_level_channels=self._low_level_channels,
            decoder_channels=self._decoder_channels,
            head_channels=self._head_channels,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
