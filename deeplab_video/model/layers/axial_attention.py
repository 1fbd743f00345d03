"""Axial attention with relative positional encodings (Axial-DeepLab, MaX-DeepLab).

A 2D self-attention is factorised into a height-axis and a width-axis 1D attention
(`AxialAttention2D`). Each 1D attention (`AxialAttention`) is global along its axis and
position-sensitive: queries, keys and values each have a learned relative positional
encoding, and batch norms are applied to the qkv projection, to the three similarity terms
(content, query-rpe, key-rpe) and to the two retrieved terms (content, rpe), as in
DeepLab2 `model/layers/axial_layers.py`.

[1] Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic Segmentation, ECCV 2020.
    Huiyu Wang, Yukun Zhu, Bradley Green, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
[2] MaX-DeepLab: End-to-End Panoptic Segmentation with Mask Transformers, CVPR 2021.
    Huiyu Wang, Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
"""

from typing import Any

import tensorflow as tf
import tf_keras
from absl import logging

from deeplab_video.model.layers import normalization, shapes

# Largest relative distance with its own embedding (DeepLab2 MAX_SPAN): the embedding
# tables have 2 * max_span - 1 rows whatever the input size, and distances beyond the span
# share the table's end rows.
MAX_SPAN = 255


def relative_distance_indices(length: tf.Tensor | int, max_span: int) -> tf.Tensor:
    """Rows of the relative embedding table for every (query, key) pair of an axis.

    Args:
        length: number of positions along the axis (queries and keys alike).
        max_span: the table covers distances -(max_span - 1) .. max_span - 1.

    Returns:
        int32 [length, length]: key - query + max_span - 1, clipped to the table.
    """
    positions = tf.range(length)
    distance = positions[None, :] - positions[:, None]
    return tf.clip_by_value(distance + max_span - 1, 0, 2 * max_span - 2)


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class RelativePositionalEncoding(tf_keras.layers.Layer):
    """A learned embedding per relative distance, gathered for every (query, key) pair."""

    def __init__(self, depth: int, max_span: int = MAX_SPAN, **kwargs: Any):
        """Initializes the layer.

        Args:
            depth: channels of each embedding.
            max_span: see `relative_distance_indices`.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._depth = depth
        self._max_span = max_span

    def build(self, input_shape: Any) -> None:
        self._embeddings = self.add_weight(
            name="embeddings",
            shape=(2 * self._max_span - 1, self._depth),
            initializer=tf_keras.initializers.TruncatedNormal(stddev=1.0),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, length: tf.Tensor) -> tf.Tensor:
        """Gathers the encodings.

        Args:
            length: int32 scalar, the axis length.

        Returns:
            compute dtype [length, length, depth].
        """
        table = tf.cast(self._embeddings, self.compute_dtype)
        return tf.gather(table, relative_distance_indices(length, self._max_span))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(depth=self._depth, max_span=self._max_span)
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class AxialAttention(tf_keras.layers.Layer):
    """Global multi-head self-attention along one axis with relative positions."""

    def __init__(
        self,
        total_key_depth: int,
        total_value_depth: int,
        num_heads: int = 8,
        max_span: int = MAX_SPAN,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            total_key_depth: channels of queries and keys over all heads.
            total_value_depth: channels of values (and of the output) over all heads.
            num_heads: number of attention heads.
            max_span: see `relative_distance_indices`.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: a depth is not divisible by num_heads.
        """
        super().__init__(**kwargs)
        if total_key_depth % num_heads or total_value_depth % num_heads:
            raise ValueError(
                f"{self.name}: key depth {total_key_depth} and value depth "
                f"{total_value_depth} must be divisible by num_heads {num_heads}"
            )
        self._total_key_depth = total_key_depth
        self._total_value_depth = total_value_depth
        self._num_heads = num_heads
        self._max_span = max_span
        self._norm_layer = normalization.resolve(norm_layer)
        key_depth_per_head = total_key_depth // num_heads
        value_depth_per_head = total_value_depth // num_heads
        self._batch_norm_qkv = self._norm_layer(axis=-1, name="batch_norm_qkv")
        # Over [3 terms, batch, heads, query, key]: one scale per term and head.
        self._batch_norm_similarity = self._norm_layer(axis=[0, 2], name="batch_norm_similarity")
        # Over [2 terms, batch, heads, query, value channel].
        self._batch_norm_retrieved_output = self._norm_layer(
            axis=[0, 2, 4], name="batch_norm_retrieved_output"
        )
        self._query_rpe = RelativePositionalEncoding(key_depth_per_head, max_span, name="query_rpe")
        self._key_rpe = RelativePositionalEncoding(key_depth_per_head, max_span, name="key_rpe")
        self._value_rpe = RelativePositionalEncoding(
            value_depth_per_head, max_span, name="value_rpe"
        )

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known")
        if input_shape[1] is not None and input_shape[1] > self._max_span:
            logging.warning(
                "%s: axis length %d exceeds max_span %d; longer distances share embeddings.",
                self.name,
                input_shape[1],
                self._max_span,
            )
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel",
            shape=(channels, 2 * self._total_key_depth + self._total_value_depth),
            initializer=tf_keras.initializers.TruncatedNormal(stddev=channels**-0.5),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Attends along the length axis.

        Args:
            inputs: float [batch, length, channels].
            training: whether batch norms use batch statistics.

        Returns:
            float [batch, length, total_value_depth].
        """
        heads = self._num_heads
        length = shapes.dimension(inputs, 1)
        qkv = tf.einsum("nlc,cd->nld", inputs, self.qkv_kernel)
        qkv = self._batch_norm_qkv(qkv, training=training)
        query, key, value = tf.split(
            qkv, [self._total_key_depth, self._total_key_depth, self._total_value_depth], -1
        )
        query = tf.transpose(
            tf.reshape(query, [-1, length, heads, query.shape[-1] // heads]), [0, 2, 1, 3]
        )
        key = tf.transpose(
            tf.reshape(key, [-1, length, heads, key.shape[-1] // heads]), [0, 2, 1, 3]
        )
        value = tf.reshape(value, [-1, length, heads, value.shape[-1] // heads])

        # Relative encodings [length, length, depth]; similarity terms [batch, heads, query,
        # key].
        length_tensor = tf.convert_to_tensor(length)
        content = tf.einsum("bhld,bhmd->bhlm", query, key)
        query_rpe = tf.einsum("bhld,lmd->bhlm", query, self._query_rpe(length_tensor))
        key_rpe = tf.einsum("bhmd,lmd->bhlm", key, self._key_rpe(length_tensor))
        similarity = self._batch_norm_similarity(
            tf.stack([content, query_rpe, key_rpe]), training=training
        )
        logits = tf.reduce_sum(similarity, axis=0)
        weights = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), inputs.dtype)

        # Each retrieved term: [batch, heads, query, value channel].
        retrieved_content = tf.einsum("bhlm,bmhd->bhld", weights, value)
        retrieved_rpe = tf.einsum("bhlm,lmd->bhld", weights, self._value_rpe(length_tensor))
        retrieved = self._batch_norm_retrieved_output(
            tf.stack([retrieved_content, retrieved_rpe]), training=training
        )
        output = tf.transpose(tf.reduce_sum(retrieved, axis=0), [0, 2, 1, 3])
        return tf.reshape(output, [-1, length, self._total_value_depth])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            total_key_depth=self._total_key_depth,
            total_value_depth=self._total_value_depth,
            num_heads=self._num_heads,
            max_span=self._max_span,
            norm_layer=self._norm_layer.get_config(),
        )
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class AxialAttention2D(tf_keras.layers.Layer):
    """Height-axis then width-axis attention; a stride subsamples after each axis."""

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        key_expansion: float = 1.0,
        value_expansion: float = 2.0,
        num_heads: int = 8,
        max_span: int = MAX_SPAN,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            filters: base width; keys get filters * key_expansion channels and values (and
                the output) filters * value_expansion.
            strides: output stride (1 or 2), applied after each axis.
            key_expansion: see filters.
            value_expansion: see filters.
            num_heads: attention heads of each axis.
            max_span: see `relative_distance_indices`.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._filters = filters
        self._strides = strides
        self._key_expansion = key_expansion
        self._value_expansion = value_expansion
        self._num_heads = num_heads
        self._max_span = max_span
        self._norm_layer = normalization.resolve(norm_layer)
        self._total_value_depth = int(round(filters * value_expansion))
        axis_kwargs = dict(
            total_key_depth=int(round(filters * key_expansion)),
            total_value_depth=self._total_value_depth,
            num_heads=num_heads,
            max_span=max_span,
            norm_layer=self._norm_layer,
        )
        self._height_axis = AxialAttention(name="height_axis", **axis_kwargs)
        self._width_axis = AxialAttention(name="width_axis", **axis_kwargs)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies both axes.

        Args:
            inputs: float [batch, height, width, channels].
            training: whether batch norms use batch statistics.

        Returns:
            float [batch, ceil(height / strides), ceil(width / strides), filters *
            value_expansion].
        """
        channels = inputs.shape[-1]
        depth = self._total_value_depth
        height, width = shapes.dimension(inputs, 1), shapes.dimension(inputs, 2)
        # Fold the width axis into the batch and attend along the height axis.
        x = tf.reshape(tf.transpose(inputs, [0, 2, 1, 3]), [-1, height, channels])
        x = self._height_axis(x, training=training)
        x = tf.transpose(tf.reshape(x, [-1, width, height, depth]), [0, 2, 1, 3])
        x = x[:, :: self._strides]
        strided_height = shapes.dimension(x, 1)
        # Fold the height axis into the batch and attend along the width axis.
        x = self._width_axis(tf.reshape(x, [-1, width, depth]), training=training)
        x = tf.reshape(x, [-1, strided_height, width, depth])
        return x[:, :, :: self._strides]

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        batch, height, width, _ = tf.TensorShape(input_shape).as_list()
        stride = self._strides
        height = None if height is None else (height - 1) // stride + 1
        width = None if width is None else (width - 1) // stride + 1
        return tf.TensorShape([batch, height, width, self._total_value_depth])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self._filters,
            strides=self._strides,
            key_expansion=self._key_expansion,
            value_expansion=self._value_expansion,
            num_heads=self._num_heads,
            max_span=self._max_span,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
