"""Cross-attention from object queries to the pixels of a clip: three variants, one interface.

Every variant maps the bottleneck features of N queries and of the T*P pixels of a clip (T
frames of P = h*w pixels each) to one retrieved value per query; the decoder layer projects
it back to the query width and adds it to the queries.

- `kmeans` (clip-kMaX, Video-kMaX [1] after kMaX-DeepLab [2]): every pixel of every frame is
  assigned to the query with the largest mask logit (a hard one-hot under stop_gradient,
  computed in float32: the k-means assignment step), and each query receives the sum of the
  values of its pixels, batch-normalised (the k-means centre-update step).
- `softmax` (the original mask-transformer cross-attention [3]): multi-head attention of the
  queries over all T*P pixels, with a softmax over the pixels.
- `latent_memory` (TubeFormer-DeepLab's latent-memory attention [4], as we formulate it):
  M learnable latent slots first attend to the pixels of each frame separately (softmax
  over the P pixels of that frame), giving T*M frame-level memory entries; the queries then
  attend to those T*M entries (softmax over the memory). The memory slots are per decoder
  layer and shared by all frames; frames exchange information through the queries.

The attention of `softmax` and `latent_memory` follows DeepLab2's `AttentionOperation`: no
1/sqrt(d) scaling; the similarity logits are batch-normalised per head and the retrieved
values per channel, then activated.

[1] Video-kMaX: A Simple Unified Approach for Online and Near-Online Video Panoptic
    Segmentation, WACV 2024. Inkyu Shin, Dahun Kim, Qihang Yu, Jun Xie, Hong-Seok Kim,
    Bradley Green, In So Kweon, Kuk-Jin Yoon, Liang-Chieh Chen.
[2] k-means Mask Transformer, ECCV 2022. Qihang Yu, Huiyu Wang, Siyuan Qiao, Maxwell Collins,
    Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
[3] MaX-DeepLab: End-to-End Panoptic Segmentation with Mask Transformers, CVPR 2021.
    Huiyu Wang, Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
[4] TubeFormer-DeepLab: Video Mask Transformer, CVPR 2022. Dahun Kim, Jun Xie, Huiyu Wang,
    Siyuan Qiao, Qihang Yu, Hong-Seok Kim, Hartwig Adam, In So Kweon, Liang-Chieh Chen.
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import activations, convolutions, normalization

KMEANS = "kmeans"
SOFTMAX = "softmax"
LATENT_MEMORY = "latent_memory"


def projection(
    output_channels: int,
    name: str,
    norm_layer: normalization.BatchNormFactory,
    activation: str = "none",
    bn_gamma_initializer: str = "ones",
    attention_input_channels: int | None = None,
) -> convolutions.Conv2DSame:
    """A 1x1 convolution + batch norm (+ activation), DeepLab2's `Conv1D` for features.

    Args:
        output_channels: output width.
        name: layer name.
        norm_layer: batch-norm factory.
        activation: activation name (see `activations.ACTIVATIONS`).
        bn_gamma_initializer: 'zeros' for the last batch norm of a residual branch.
        attention_input_channels: for attention queries, keys and values: the input width
            C, and the kernel starts from a truncated normal with standard deviation
            C ** -0.5, as in DeepLab2; None: he_normal.

    Returns:
        A `Conv2DSame` with a 1x1 kernel; apply it to 4-D tensors or with `pointwise`.
    """
    initializer: Any = "he_normal"
    if attention_input_channels is not None:
        initializer = {
            "class_name": "TruncatedNormal",
            "config": {"stddev": attention_input_channels**-0.5},
        }
    return convolutions.Conv2DSame(
        output_channels,
        kernel_size=1,
        name=name,
        use_bias=False,
        use_bn=True,
        norm_layer=norm_layer,
        bn_gamma_initializer=bn_gamma_initializer,
        activation=activation,
        kernel_initializer=initializer,
    )


def pointwise(layer: tf_keras.layers.Layer, inputs: tf.Tensor, training: bool | None) -> tf.Tensor:
    """Applies a 1x1 convolution layer to a sequence.

    Args:
        layer: a layer on float [batch, height, width, channels] tensors.
        inputs: float [batch, length, channels].
        training: passed to the layer.

    Returns:
        float [batch, length, output_channels].
    """
    return tf.squeeze(layer(inputs[:, :, None, :], training=training), axis=2)


def split_heads(inputs: tf.Tensor, num_heads: int) -> tf.Tensor:
    """float [batch, length, heads * depth] -> float [batch, heads, length, depth]."""
    length = tf.shape(inputs)[1]
    depth = inputs.shape[-1] // num_heads
    return tf.transpose(tf.reshape(inputs, [-1, length, num_heads, depth]), [0, 2, 1, 3])


def kmeans_assignment(mask_logits: tf.Tensor) -> tf.Tensor:
    """The k-means assignment step: each pixel goes to the query of its largest logit.

    Args:
        mask_logits: float [batch, num_pixels, num_queries], any float dtype.

    Returns:
        float32 [batch, num_pixels, num_queries]: one-hot rows, without gradient.
    """
    logits = tf.cast(mask_logits, tf.float32)
    index = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.stop_gradient(tf.one_hot(index, depth=mask_logits.shape[-1], dtype=tf.float32))


def kmeans_update(assignment: tf.Tensor, pixel_values: tf.Tensor) -> tf.Tensor:
    """The k-means centre-update step: sums the values of the pixels of every query.

    Args:
        assignment: float32 [batch, num_pixels, num_queries] one-hot rows.
        pixel_values: float [batch, num_pixels, channels].

    Returns:
        float32 [batch, num_queries, channels].
    """
    return tf.einsum("bpn,bpc->bnc", assignment, tf.cast(pixel_values, tf.float32))


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class AttentionOperation(tf_keras.layers.Layer):
    """Multi-head attention with batch-normalised similarities (DeepLab2 MaX-DeepLab).

    Sublayers: `batch_norm_similarity` (one scale per head), `batch_norm_retrieved_value`.
    """

    def __init__(
        self,
        num_heads: int,
        activation: str = "gelu",
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            num_heads: number of heads; key and value widths must be divisible by it.
            activation: applied to the normalised retrieved values.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._num_heads = num_heads
        self._activation = activation
        self._activation_fn = activations.get_activation(activation)
        self._norm_layer = normalization.resolve(norm_layer)
        self._batch_norm_similarity = self._norm_layer(axis=1, name="batch_norm_similarity")
        self._batch_norm_retrieved_value = self._norm_layer(
            axis=-1, name="batch_norm_retrieved_value"
        )

    def call(
        self, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, training: bool | None = None
    ) -> tf.Tensor:
        """Attends from every query to all keys (softmax over the keys, in float32).

        Args:
            query: float [batch, num_queries, key_channels].
            key: float [batch, num_keys, key_channels].
            value: float [batch, num_keys, value_channels].
            training: whether batch norms use batch statistics.

        Returns:
            float [batch, num_queries, value_channels].

        Raises:
            ValueError: a width is not divisible by num_heads.
        """
        heads = self._num_heads
        if query.shape[-1] % heads or value.shape[-1] % heads:
            raise ValueError(
                f"{self.name}: key width {query.shape[-1]} and value width {value.shape[-1]} "
                f"must be divisible by num_heads {heads}"
            )
        similarity = tf.einsum(
            "bhqd,bhkd->bhqk", split_heads(query, heads), split_heads(key, heads)
        )
        similarity = self._batch_norm_similarity(similarity, training=training)
        weights = tf.nn.softmax(tf.cast(similarity, tf.float32), axis=-1)
        weights = tf.cast(weights, value.dtype)
        retrieved = tf.einsum("bhqk,bhkd->bqhd", weights, split_heads(value, heads))
        retrieved = tf.reshape(retrieved, [-1, tf.shape(query)[1], value.shape[-1]])
        retrieved = self._batch_norm_retrieved_value(retrieved, training=training)
        return self._activation_fn(retrieved)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self._num_heads,
            activation=self._activation,
            norm_layer=self._norm_layer.get_config(),
        )
        return config


class _CrossAttention(tf_keras.layers.Layer):
    """Shared constructor and config of the cross-attention variants.

    Every variant is called as `layer(query_features, pixel_features, mask_logits,
    training=...)` with
        query_features: float [batch, num_queries, channels];
        pixel_features: float [batch, num_frames, num_pixels, channels], the P = h*w pixels
            of every frame, as wide as the queries;
        mask_logits: float [batch, num_frames, num_pixels, num_queries], the queries'
            current mask logits (required when `needs_mask_logits`, else ignored; may be
            None);
    and returns float [batch, num_queries, value_channels].
    """

    # Whether `call` needs the mask logits of the queries over the pixels.
    needs_mask_logits = False

    def __init__(
        self,
        key_channels: int,
        value_channels: int,
        num_heads: int = 8,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            key_channels: width of queries and keys over all heads (unused by kmeans).
            value_channels: width of the values and of the output.
            num_heads: number of attention heads (unused by kmeans).
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: a width is not positive or not divisible by num_heads.
        """
        super().__init__(**kwargs)
        if min(key_channels, value_channels, num_heads) < 1:
            raise ValueError(f"{self.name}: widths and num_heads must be positive")
        if key_channels % num_heads or value_channels % num_heads:
            raise ValueError(
                f"{self.name}: key_channels {key_channels} and value_channels "
                f"{value_channels} must be divisible by num_heads {num_heads}"
            )
        self._key_channels = key_channels
        self._value_channels = value_channels
        self._num_heads = num_heads
        self._norm_layer = normalization.resolve(norm_layer)
        self._input_channels: int | None = None

    def build(self, input_shape: Any) -> None:
        self._input_channels = int(tf.TensorShape(input_shape)[-1])
        self._build_sublayers(self._input_channels)
        super().build(input_shape)

    def _check_pixel_width(self, pixel_features: tf.Tensor) -> None:
        if pixel_features.shape[-1] != self._input_channels:
            raise ValueError(
                f"{self.name}: pixel features are {pixel_features.shape[-1]} wide but the "
                f"queries {self._input_channels}; both must share one width"
            )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            key_channels=self._key_channels,
            value_channels=self._value_channels,
            num_heads=self._num_heads,
            norm_layer=self._norm_layer.get_config(),
        )
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class KMeansCrossAttention(_CrossAttention):
    """k-means cross-attention over the clip: argmax over queries, then centre update.

    Sublayers: `pixel_value_conv_bn` (1x1 value projection), `batch_norm_retrieved_value`
    (in float32: sums over up to T*P pixels overflow float16).
    """

    needs_mask_logits = True

    def _build_sublayers(self, channels: int) -> None:
        self._pixel_value_conv_bn = projection(
            self._value_channels,
            "pixel_value_conv_bn",
            self._norm_layer,
            attention_input_channels=channels,
        )
        self._batch_norm_retrieved_value = self._norm_layer(
            axis=-1, name="batch_norm_retrieved_value", dtype="float32"
        )

    def call(self, query_features, pixel_features, mask_logits=None, training=None):
        if mask_logits is None:
            raise ValueError(f"{self.name}: k-means cross-attention needs the mask logits")
        self._check_pixel_width(pixel_features)
        num_queries = mask_logits.shape[-1]
        values = self._pixel_value_conv_bn(pixel_features, training=training)
        values = tf.reshape(values, [tf.shape(values)[0], -1, self._value_channels])
        assignment = kmeans_assignment(
            tf.reshape(mask_logits, [tf.shape(values)[0], -1, num_queries])
        )
        update = kmeans_update(assignment, values)
        update = self._batch_norm_retrieved_value(update, training=training)
        return tf.cast(update, self.compute_dtype)


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class SoftmaxCrossAttention(_CrossAttention):
    """Normal cross-attention: a softmax over all T*P pixels of the clip.

    Sublayers: `query_conv_bn`, `pixel_key_value_conv_bn`, `attention`.
    """

    def _build_sublayers(self, channels: int) -> None:
        key, value = self._key_channels, self._value_channels
        self._query_conv_bn = projection(
            key, "query_conv_bn", self._norm_layer, attention_input_channels=channels
        )
        self._pixel_key_value_conv_bn = projection(
            key + value,
            "pixel_key_value_conv_bn",
            self._norm_layer,
            attention_input_channels=channels,
        )
        self._attention = AttentionOperation(
            self._num_heads, norm_layer=self._norm_layer, name="attention"
        )

    def call(self, query_features, pixel_features, mask_logits=None, training=None):
        self._check_pixel_width(pixel_features)
        query = pointwise(self._query_conv_bn, query_features, training)
        key_value = self._pixel_key_value_conv_bn(pixel_features, training=training)
        key_value = tf.reshape(key_value, [tf.shape(key_value)[0], -1, key_value.shape[-1]])
        key, value = tf.split(key_value, [self._key_channels, self._value_channels], axis=-1)
        return self._attention(query, key, value, training=training)


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class LatentMemoryCrossAttention(_CrossAttention):
    """Latent-memory cross-attention: slots read each frame, queries read the slots.

    Sublayers: `latent_queries` (weight [num_latents, key_channels]),
    `pixel_key_value_conv_bn`, `latent_attention`, `latent_key_value_conv_bn`,
    `query_conv_bn`, `query_attention`.
    """

    def __init__(self, key_channels: int, value_channels: int, num_latents: int = 16, **kwargs):
        """Initializes the layer.

        Args:
            key_channels: width of queries and keys over all heads.
            value_channels: width of the values, of the memory and of the output.
            num_latents: number of latent memory slots M per frame.
            **kwargs: num_heads, norm_layer and `tf_keras.layers.Layer` arguments.

        Raises:
            ValueError: num_latents is not positive, or see `_CrossAttention`.
        """
        super().__init__(key_channels, value_channels, **kwargs)
        if num_latents < 1:
            raise ValueError(f"{self.name}: num_latents must be positive, got {num_latents}")
        self._num_latents = num_latents

    def _build_sublayers(self, channels: int) -> None:
        key, value = self._key_channels, self._value_channels
        self.latent_queries = self.add_weight(
            name="latent_queries",
            shape=(self._num_latents, key),
            initializer=tf_keras.initializers.TruncatedNormal(stddev=1.0),
            trainable=True,
        )
        self._pixel_key_value_conv_bn = projection(
            key + value,
            "pixel_key_value_conv_bn",
            self._norm_layer,
            attention_input_channels=channels,
        )
        self._latent_attention = AttentionOperation(
            self._num_heads, norm_layer=self._norm_layer, name="latent_attention"
        )
        self._latent_key_value_conv_bn = projection(
            key + value,
            "latent_key_value_conv_bn",
            self._norm_layer,
            attention_input_channels=value,
        )
        self._query_conv_bn = projection(
            key, "query_conv_bn", self._norm_layer, attention_input_channels=channels
        )
        self._query_attention = AttentionOperation(
            self._num_heads, norm_layer=self._norm_layer, name="query_attention"
        )

    def call(self, query_features, pixel_features, mask_logits=None, training=None):
        self._check_pixel_width(pixel_features)
        batch = tf.shape(pixel_features)[0]
        num_frames = tf.shape(pixel_features)[1]
        # Frame-level: the slots of every frame attend to that frame's pixels.
        key_value = self._pixel_key_value_conv_bn(pixel_features, training=training)
        key_value = tf.reshape(key_value, [batch * num_frames, -1, key_value.shape[-1]])
        key, value = tf.split(key_value, [self._key_channels, self._value_channels], axis=-1)
        latents = tf.cast(self.latent_queries, key.dtype)
        latents = tf.tile(latents[None], [batch * num_frames, 1, 1])
        memory = self._latent_attention(latents, key, value, training=training)
        # Clip-level: the queries attend to the T * M memory entries.
        memory = tf.reshape(memory, [batch, -1, self._value_channels])
        memory = pointwise(self._latent_key_value_conv_bn, memory, training)
        memory_key, memory_value = tf.split(
            memory, [self._key_channels, self._value_channels], axis=-1
        )
        query = pointwise(self._query_conv_bn, query_features, training)
        return self._query_attention(query, memory_key, memory_value, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_latents=self._num_latents)
        return config


CROSS_ATTENTIONS = {
    KMEANS: KMeansCrossAttention,
    SOFTMAX: SoftmaxCrossAttention,
    LATENT_MEMORY: LatentMemoryCrossAttention,
}


def build_cross_attention(
    kind: str,
    key_channels: int,
    value_channels: int,
    num_heads: int,
    num_latent_memory: int,
    norm_layer: normalization.BatchNormFactory | None,
    name: str,
) -> _CrossAttention:
    """Creates the cross-attention `kind`.

    Args:
        kind: one of CROSS_ATTENTIONS ('kmeans', 'softmax', 'latent_memory').
        key_channels: width of queries and keys over all heads.
        value_channels: width of the values and of the output.
        num_heads: number of attention heads.
        num_latent_memory: latent memory slots per frame (latent_memory only).
        norm_layer: batch-norm factory; None for the default.
        name: layer name.

    Returns:
        The layer; its `needs_mask_logits` says whether `call` needs mask logits.

    Raises:
        ValueError: unknown kind, or invalid widths.
    """
    if kind not in CROSS_ATTENTIONS:
        raise ValueError(
            f"unknown cross-attention '{kind}'; expected one of {', '.join(CROSS_ATTENTIONS)}"
        )
    kwargs: dict[str, Any] = dict(num_heads=num_heads, norm_layer=norm_layer, name=name)
    if kind == LATENT_MEMORY:
        kwargs["num_latents"] = num_latent_memory
    return CROSS_ATTENTIONS[kind](key_channels, value_channels, **kwargs)
