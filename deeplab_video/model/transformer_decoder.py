"""The clip-kMaX transformer decoder of Video-kMaX [1].

Learnable queries (cluster centres) are refined by decoder layers on the pixel-decoder
features at strides 32, 16 and 8 (`num_layers_per_stage` layers each). Every layer sees the
T*h*w pixels of the whole clip at its stride, so a query gathers one object over all frames
(a tube). A layer, after DeepLab2's dual-path transformer layer with k-means cross-attention
(`model/layers/dual_path_transformer.py`, kMaX-DeepLab [2]):

    p = conv1_bn_gelu(gelu(pixels))                 pixel bottleneck, value_channels wide
    q = conv1_bn_gelu(queries)                      query bottleneck, value_channels wide
    predictions = prediction_head(p, q)             mask and class logits of this layer
    c = conv3_bn(cross_attention(q, p, mask logits of the predictions))
    s = conv3_bn(self_attention(qkv_conv_bn(q)))    multi-head query self-attention
    queries = gelu(queries + drop_path(c) + drop_path(s))
    queries = gelu(queries + drop_path(ffn(queries)))

The cross-attention and the self-attention both read the layer's input queries, as in
DeepLab2. The last batch norm of every residual branch starts with gamma = 0. After the last
layer, two 1x1 projections give the class and mask features of the queries, which the
model's final `KMaXPredictionHead` turns into predictions at stride 4.

[1] Video-kMaX: A Simple Unified Approach for Online and Near-Online Video Panoptic
    Segmentation, WACV 2024. Inkyu Shin, Dahun Kim, Qihang Yu, Jun Xie, Hong-Seok Kim,
    Bradley Green, In So Kweon, Kuk-Jin Yoon, Liang-Chieh Chen.
[2] k-means Mask Transformer, ECCV 2022. Qihang Yu, Huiyu Wang, Siyuan Qiao, Maxwell Collins,
    Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
"""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video import common
from deeplab_video.model import heads
from deeplab_video.model.layers import (
    activations,
    convolutions,
    cross_attention,
    drop_path,
    normalization,
)

# Strides of the pixel-decoder features the decoder stages attend to, in order.
STAGE_STRIDES = (32, 16, 8)
ACTIVATION = "gelu"


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class KMaXTransformerLayer(tf_keras.layers.Layer):
    """One clip-kMaX decoder layer: cross-attention, query self-attention and FFN.

    Sublayers: `pixel_conv1_bn_act`, `query_conv1_bn_act`, `prediction_head` (when
    predictions are needed), `cross_attention` and `cross_attention_conv3_bn`,
    `query_qkv_conv_bn`, `self_attention` and `self_attention_conv3_bn`,
    `ffn_conv1_bn_act`, `ffn_conv2_bn`.
    """

    def __init__(
        self,
        num_classes: int,
        query_channels: int = 256,
        key_channels: int = 128,
        value_channels: int = 256,
        ffn_channels: int = 2048,
        num_heads: int = 8,
        cross_attention_kind: str = cross_attention.KMEANS,
        num_latent_memory: int = 16,
        embedding_channels: int = 128,
        head_channels: int = 256,
        return_predictions: bool = True,
        drop_path_keep_prob: float = 1.0,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            num_classes: number of semantic classes, without void.
            query_channels: width of the queries.
            key_channels: width of attention queries and keys over all heads.
            value_channels: width of the bottlenecks and the attention values.
            ffn_channels: hidden width of the feed-forward network.
            num_heads: number of heads of the query self-attention (and of softmax and
                latent-memory cross-attention).
            cross_attention_kind: see `cross_attention.CROSS_ATTENTIONS`.
            num_latent_memory: latent memory slots per frame (latent_memory only).
            embedding_channels: width of the pixel and query embeddings of the predictions.
            head_channels: hidden width of the pixel-space head of the predictions.
            return_predictions: whether `call` returns this layer's predictions (deep
                supervision); k-means cross-attention computes them in any case.
            drop_path_keep_prob: keep probability of the three residual branches.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: invalid widths, cross-attention kind or keep probability.
        """
        super().__init__(**kwargs)
        drop_path.check_keep_prob(drop_path_keep_prob, self.name)
        if key_channels % num_heads or value_channels % num_heads:
            raise ValueError(
                f"{self.name}: key_channels {key_channels} and value_channels "
                f"{value_channels} must be divisible by num_heads {num_heads}"
            )
        self._config = dict(
            num_classes=num_classes,
            query_channels=query_channels,
            key_channels=key_channels,
            value_channels=value_channels,
            ffn_channels=ffn_channels,
            num_heads=num_heads,
            cross_attention_kind=cross_attention_kind,
            num_latent_memory=num_latent_memory,
            embedding_channels=embedding_channels,
            head_channels=head_channels,
            return_predictions=return_predictions,
            drop_path_keep_prob=drop_path_keep_prob,
        )
        self._norm_layer = normalization.resolve(norm_layer)
        self._activation_fn = activations.get_activation(ACTIVATION)
        self._return_predictions = return_predictions
        self._key_channels = key_channels
        self._value_channels = value_channels
        norm = self._norm_layer

        def projection(out: int, name: str, **options: Any) -> convolutions.Conv2DSame:
            return cross_attention.projection(out, name, norm, **options)

        self._pixel_conv1_bn_act = projection(
            value_channels, "pixel_conv1_bn_act", activation=ACTIVATION
        )
        self._query_conv1_bn_act = projection(
            value_channels, "query_conv1_bn_act", activation=ACTIVATION
        )
        self._cross_attention = cross_attention.build_cross_attention(
            cross_attention_kind,
            key_channels,
            value_channels,
            num_heads,
            num_latent_memory,
            norm,
            name="cross_attention",
        )
        self._prediction_head = None
        if return_predictions or self._cross_attention.needs_mask_logits:
            self._prediction_head = heads.KMaXPredictionHead(
                num_classes,
                embedding_channels,
                head_channels,
                norm_layer=norm,
                name="prediction_head",
            )
        zero_init = dict(bn_gamma_initializer="zeros")
        self._cross_attention_conv3_bn = projection(
            query_channels, "cross_attention_conv3_bn", **zero_init
        )
        self._query_qkv_conv_bn = projection(
            2 * key_channels + value_channels,
            "query_qkv_conv_bn",
            attention_input_channels=value_channels,
        )
        self._self_attention = cross_attention.AttentionOperation(
            num_heads, norm_layer=norm, name="self_attention"
        )
        self._self_attention_conv3_bn = projection(
            query_channels, "self_attention_conv3_bn", **zero_init
        )
        self._ffn_conv1_bn_act = projection(ffn_channels, "ffn_conv1_bn_act", activation=ACTIVATION)
        self._ffn_conv2_bn = projection(query_channels, "ffn_conv2_bn", **zero_init)
        self._drop_paths = [
            drop_path.DropPath(drop_path_keep_prob, name=f"drop_path_{branch}")
            for branch in ("cross_attention", "self_attention", "ffn")
        ]

    def call(
        self, pixel_features: tf.Tensor, queries: tf.Tensor, training: bool | None = None
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor] | None]:
        """Refines the queries with the pixels of the clip.

        Args:
            pixel_features: float [batch, num_frames, height, width, channels], the
                non-activated pixel-decoder features of every frame.
            queries: float [batch, num_queries, query_channels].
            training: whether batch norms and drop path run in training mode.

        Returns:
            queries: float [batch, num_queries, query_channels], refined.
            predictions: the `KMaXPredictionHead` dict of this layer at the features'
                resolution (mask logits [batch, num_frames, height, width, num_queries]),
                or None without return_predictions.
        """
        shape = tf.shape(pixel_features)
        frames = tf.reshape(pixel_features, tf.concat([[-1], shape[2:]], 0))
        frames.set_shape([None, *pixel_features.shape[2:]])
        pixels = self._pixel_conv1_bn_act(self._activation_fn(frames), training=training)
        pixels = tf.reshape(pixels, tf.concat([shape[:4], [self._value_channels]], 0))
        query_space = cross_attention.pointwise(self._query_conv1_bn_act, queries, training)

        predictions = mask_logits = None
        if self._prediction_head is not None:
            predictions = self._prediction_head(pixels, query_space, query_space, training=training)
            mask_logits = predictions[common.PRED_MASK_LOGITS]
            mask_logits = tf.reshape(mask_logits, [shape[0], shape[1], -1, mask_logits.shape[-1]])
        pixel_sequence = tf.reshape(pixels, [shape[0], shape[1], -1, self._value_channels])
        cross = self._cross_attention(query_space, pixel_sequence, mask_logits, training=training)
        cross = cross_attention.pointwise(self._cross_attention_conv3_bn, cross, training)

        qkv = cross_attention.pointwise(self._query_qkv_conv_bn, query_space, training)
        key = self._key_channels
        query, key, value = tf.split(qkv, [key, key, self._value_channels], axis=-1)
        attended = self._self_attention(query, key, value, training=training)
        attended = cross_attention.pointwise(self._self_attention_conv3_bn, attended, training)

        cross_drop, attention_drop, ffn_drop = self._drop_paths
        queries = queries + cross_drop(cross, training=training)
        queries = self._activation_fn(queries + attention_drop(attended, training=training))
        ffn = cross_attention.pointwise(self._ffn_conv1_bn_act, queries, training)
        ffn = cross_attention.pointwise(self._ffn_conv2_bn, ffn, training)
        queries = self._activation_fn(queries + ffn_drop(ffn, training=training))
        if not self._return_predictions:
            predictions = None
        return queries, predictions

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self._config, norm_layer=self._norm_layer.get_config())
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class KMaXTransformerDecoder(tf_keras.layers.Layer):
    """Learnable queries refined over the clip at strides 32, 16 and 8.

    Weights: `cluster_centers` [num_queries, query_channels]. Sublayers:
    `kmax_transformer_layer_os{stride}_{index}`, `class_embedding_projection`,
    `mask_embedding_projection`.
    """

    def __init__(
        self,
        num_classes: int,
        num_queries: int = 128,
        num_layers_per_stage: Sequence[int] = (2, 2, 2),
        query_channels: int = 256,
        key_channels: int = 128,
        value_channels: int = 256,
        ffn_channels: int = 2048,
        num_heads: int = 8,
        cross_attention_kind: str = cross_attention.KMEANS,
        num_latent_memory: int = 16,
        embedding_channels: int = 128,
        head_channels: int = 256,
        deep_supervision: bool = True,
        drop_path_keep_prob: float = 1.0,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the decoder.

        Args:
            num_classes: number of semantic classes, without void.
            num_queries: number of queries N.
            num_layers_per_stage: decoder layers at strides 32, 16 and 8.
            query_channels, key_channels, value_channels, ffn_channels, num_heads,
                cross_attention_kind, num_latent_memory, embedding_channels,
                head_channels, drop_path_keep_prob: see `KMaXTransformerLayer` (the same
                for every layer).
            deep_supervision: whether `call` returns every layer's predictions.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: num_layers_per_stage does not have one entry per stride, a count is
                negative, or see `KMaXTransformerLayer`.
        """
        super().__init__(**kwargs)
        num_layers_per_stage = tuple(int(n) for n in num_layers_per_stage)
        if len(num_layers_per_stage) != len(STAGE_STRIDES) or min(num_layers_per_stage) < 0:
            raise ValueError(
                f"{self.name}: num_layers_per_stage needs one count >= 0 per stride "
                f"{STAGE_STRIDES}, got {num_layers_per_stage}"
            )
        if num_queries < 1:
            raise ValueError(f"{self.name}: num_queries must be positive, got {num_queries}")
        layer_config = dict(
            num_classes=num_classes,
            query_channels=query_channels,
            key_channels=key_channels,
            value_channels=value_channels,
            ffn_channels=ffn_channels,
            num_heads=num_heads,
            cross_attention_kind=cross_attention_kind,
            num_latent_memory=num_latent_memory,
            embedding_channels=embedding_channels,
            head_channels=head_channels,
            drop_path_keep_prob=drop_path_keep_prob,
        )
        self._config = dict(
            layer_config,
            num_queries=num_queries,
            num_layers_per_stage=num_layers_per_stage,
            deep_supervision=deep_supervision,
        )
        self._norm_layer = normalization.resolve(norm_layer)
        self._num_queries = num_queries
        self._query_channels = query_channels
        self._num_layers_per_stage = num_layers_per_stage
        self._stage_layers = [
            [
                KMaXTransformerLayer(
                    **layer_config,
                    return_predictions=deep_supervision,
                    norm_layer=self._norm_layer,
                    name=f"kmax_transformer_layer_os{stride}_{index}",
                )
                for index in range(count)
            ]
            for stride, count in zip(STAGE_STRIDES, num_layers_per_stage, strict=True)
        ]
        self._class_embedding_projection = cross_attention.projection(
            query_channels, "class_embedding_projection", self._norm_layer, activation=ACTIVATION
        )
        self._mask_embedding_projection = cross_attention.projection(
            query_channels, "mask_embedding_projection", self._norm_layer, activation=ACTIVATION
        )

    def build(self, input_shape: Any) -> None:
        self.cluster_centers = self.add_weight(
            name="cluster_centers",
            shape=(self._num_queries, self._query_channels),
            initializer=tf_keras.initializers.TruncatedNormal(stddev=1.0),
            trainable=True,
        )
        super().build(input_shape)

    def call(
        self, pixel_features: Sequence[tf.Tensor], training: bool | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, list[dict[str, tf.Tensor]]]:
        """Decodes the queries of a clip.

        Args:
            pixel_features: three float [batch, num_frames, h_s, w_s, channels_s] tensors,
                the pixel-decoder features at strides 32, 16 and 8.
            training: whether batch norms and drop path run in training mode.

        Returns:
            class_features: float [batch, num_queries, query_channels].
            mask_features: float [batch, num_queries, query_channels].
            predictions: with deep_supervision, one `KMaXPredictionHead` dict per layer in
                order, at the resolution of that layer's features; else empty.

        Raises:
            ValueError: pixel_features does not hold one tensor per stride.
        """
        if len(pixel_features) != len(STAGE_STRIDES):
            raise ValueError(
                f"{self.name}: expected features at strides {STAGE_STRIDES}, got "
                f"{len(pixel_features)} tensors"
            )
        batch = tf.shape(pixel_features[0])[0]
        queries = tf.cast(self.cluster_centers, self.compute_dtype)
        queries = tf.tile(queries[None], [batch, 1, 1])
        predictions = []
        for features, stage_layers in zip(pixel_features, self._stage_layers, strict=True):
            for layer in stage_layers:
                queries, layer_predictions = layer(features, queries, training=training)
                if layer_predictions is not None:
                    predictions.append(layer_predictions)
        class_features = cross_attention.pointwise(
            self._class_embedding_projection, queries, training
        )
        mask_features = cross_attention.pointwise(
            self._mask_embedding_projection, queries, training
        )
        return class_features, mask_features, predictions

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self._config, norm_layer=self._norm_layer.get_config())
        return config
