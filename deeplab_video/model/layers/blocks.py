"""Residual blocks of the (Axial-)ResNets and the kMaX pixel decoder, and block groups.

Blocks follow DeepLab2 `model/layers/axial_blocks.py`: a block takes the group's
non-activated features, activates them, and returns branch + shortcut without a final
activation. The last batch norm of every branch starts with gamma = 0 (Goyal et al.,
"Accurate, Large Minibatch SGD"), so each block starts as its shortcut. A stride is applied
by the first spatial operation (3x3 convolution or attention) and by the shortcut.

- `BottleneckBlock`: 1x1 (filters) -> 3x3 (filters) -> 1x1 (4 * filters).
- `AxialBlock`: 1x1 (2 * filters) -> axial attention (filters; outputs 2 * filters) ->
  activation -> 1x1 (4 * filters) (MaX-DeepLab, Axial-DeepLab).
- `BlockGroup`: a stack of such blocks at one resolution.
"""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import (
    activations,
    axial_attention,
    convolutions,
    drop_path,
    normalization,
)

BOTTLENECK = "bottleneck"
AXIAL = "axial"
BLOCK_TYPES = (BOTTLENECK, AXIAL)
# Output channels of a block = EXPANSION * filters.
EXPANSION = 4
# Width of the 1x1 convolution before axial attention, in multiples of filters.
AXIAL_BOTTLENECK_EXPANSION = 2


class _ResidualBlock(tf_keras.layers.Layer):
    """Shared part of the blocks: input activation, shortcut, conv3_bn, drop path, sum.

    Subclasses define `_branch(x, training)`, the residual branch before `conv3_bn`.
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        activation: str = "relu",
        drop_path_keep_prob: float = 1.0,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if filters < 1 or strides < 1:
            raise ValueError(f"{self.name}: filters and strides must be positive")
        self._filters = filters
        self._strides = strides
        self._activation = activation
        self._drop_path_keep_prob = drop_path_keep_prob
        self._norm_layer = normalization.resolve(norm_layer)
        self._activation_fn = activations.get_activation(activation)
        self._drop_path = drop_path.DropPath(drop_path_keep_prob, name="drop_path")
        self._conv3_bn = convolutions.Conv2DSame(
            EXPANSION * filters,
            1,
            "conv3_bn",
            use_bias=False,
            use_bn=True,
            norm_layer=self._norm_layer,
            bn_gamma_initializer="zeros",
        )

    def build(self, input_shape: tf.TensorShape) -> None:
        self._shortcut = None
        if tf.TensorShape(input_shape)[-1] != EXPANSION * self._filters:
            self._shortcut = convolutions.Conv2DSame(
                EXPANSION * self._filters,
                1,
                "shortcut",
                strides=self._strides,
                use_bias=False,
                use_bn=True,
                norm_layer=self._norm_layer,
            )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies the block.

        Args:
            inputs: float [batch, height, width, channels], not activated.
            training: whether batch norm and drop path run in training mode.

        Returns:
            float [batch, ceil(height / strides), ceil(width / strides), 4 * filters], not
            activated.
        """
        x = self._activation_fn(inputs)
        if self._shortcut is not None:
            shortcut = self._shortcut(x, training=training)
        else:
            shortcut = x[:, :: self._strides, :: self._strides]
        x = self._conv3_bn(self._branch(x, training), training=training)
        return self._drop_path(x, training=training) + shortcut

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self._filters,
            strides=self._strides,
            activation=self._activation,
            drop_path_keep_prob=self._drop_path_keep_prob,
            norm_layer=self._norm_layer.get_config(),
        )
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class BottleneckBlock(_ResidualBlock):
    """ResNet bottleneck block: 1x1, 3x3 (strided, dilated), 1x1."""

    def __init__(self, filters: int, atrous_rate: int = 1, **kwargs: Any):
        """Initializes the block.

        Args:
            filters: width of the 1x1 and 3x3 convolutions; the block outputs 4 * filters.
            atrous_rate: dilation of the 3x3 convolution.
            **kwargs: strides, activation, drop_path_keep_prob, norm_layer, name, dtype.
        """
        super().__init__(filters, **kwargs)
        self._atrous_rate = atrous_rate
        conv_kwargs = dict(
            use_bias=False, use_bn=True, norm_layer=self._norm_layer, activation=self._activation
        )
        self._conv1_bn_act = convolutions.Conv2DSame(filters, 1, "conv1_bn_act", **conv_kwargs)
        self._conv2_bn_act = convolutions.Conv2DSame(
            filters,
            3,
            "conv2_bn_act",
            strides=self._strides,
            atrous_rate=atrous_rate,
            **conv_kwargs,
        )

    def _branch(self, x: tf.Tensor, training: bool | None) -> tf.Tensor:
        x = self._conv1_bn_act(x, training=training)
        return self._conv2_bn_act(x, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(atrous_rate=self._atrous_rate)
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class AxialBlock(_ResidualBlock):
    """Axial-attention block: 1x1, height+width axial attention (strided), 1x1."""

    def __init__(
        self,
        filters: int,
        num_heads: int = 8,
        max_span: int = axial_attention.MAX_SPAN,
        **kwargs: Any,
    ):
        """Initializes the block.

        Args:
            filters: key width of the attention; the 1x1 before it has 2 * filters
                channels, the attention outputs 2 * filters and the block 4 * filters.
            num_heads: attention heads.
            max_span: relative-position span of the attention.
            **kwargs: strides, activation, drop_path_keep_prob, norm_layer, name, dtype.
        """
        super().__init__(filters, **kwargs)
        self._num_heads = num_heads
        self._max_span = max_span
        self._conv1_bn_act = convolutions.Conv2DSame(
            AXIAL_BOTTLENECK_EXPANSION * filters,
            1,
            "conv1_bn_act",
            use_bias=False,
            use_bn=True,
            norm_layer=self._norm_layer,
            activation=self._activation,
        )
        self._attention = axial_attention.AxialAttention2D(
            filters,
            strides=self._strides,
            num_heads=num_heads,
            max_span=max_span,
            norm_layer=self._norm_layer,
            name="attention",
        )

    def _branch(self, x: tf.Tensor, training: bool | None) -> tf.Tensor:
        x = self._conv1_bn_act(x, training=training)
        return self._activation_fn(self._attention(x, training=training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_heads=self._num_heads, max_span=self._max_span)
        return config


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class BlockGroup(tf_keras.layers.Layer):
    """A stack of residual blocks; the first may stride. Sublayers `_block1`, `_block2`..."""

    def __init__(
        self,
        filters: int,
        block_types: Sequence[str],
        strides: int = 1,
        atrous_rate: int = 1,
        drop_path_keep_probs: Sequence[float] | None = None,
        activation: str = "relu",
        axial_num_heads: int = 8,
        axial_max_span: int = axial_attention.MAX_SPAN,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the group.

        Args:
            filters: base width of every block (each outputs 4 * filters).
            block_types: one of BLOCK_TYPES per block.
            strides: stride of the first block.
            atrous_rate: dilation of the bottleneck blocks' 3x3 convolutions.
            drop_path_keep_probs: keep probability per block; None keeps every path.
            activation: see `activations.ACTIVATIONS`.
            axial_num_heads: attention heads of the axial blocks.
            axial_max_span: relative-position span of the axial blocks.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: no blocks, an unknown block type, a keep-probability list of
                another length, or both a stride and a dilation.
        """
        super().__init__(**kwargs)
        block_types = list(block_types)
        if not block_types:
            raise ValueError(f"{self.name}: a block group needs at least one block")
        unknown = sorted(set(block_types) - set(BLOCK_TYPES))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown block types {unknown}; expected {', '.join(BLOCK_TYPES)}"
            )
        if strides > 1 and atrous_rate > 1 and BOTTLENECK in block_types:
            raise ValueError(
                f"{self.name}: a strided group cannot also dilate its convolutions "
                f"(strides {strides}, atrous_rate {atrous_rate})"
            )
        if drop_path_keep_probs is None:
            drop_path_keep_probs = [1.0] * len(block_types)
        drop_path_keep_probs = [float(p) for p in drop_path_keep_probs]
        if len(drop_path_keep_probs) != len(block_types):
            raise ValueError(
                f"{self.name}: {len(drop_path_keep_probs)} drop path keep probabilities for "
                f"{len(block_types)} blocks"
            )
        self._filters = filters
        self._block_types = block_types
        self._strides = strides
        self._atrous_rate = atrous_rate
        self._drop_path_keep_probs = drop_path_keep_probs
        self._activation = activation
        self._axial_num_heads = axial_num_heads
        self._axial_max_span = axial_max_span
        self._norm_layer = normalization.resolve(norm_layer)
        self._num_blocks = len(block_types)
        for index, (block_type, keep_prob) in enumerate(
            zip(block_types, drop_path_keep_probs, strict=True)
        ):
            common = dict(
                strides=strides if index == 0 else 1,
                activation=activation,
                drop_path_keep_prob=keep_prob,
                norm_layer=self._norm_layer,
                name=f"block{index + 1}",
            )
            if block_type == AXIAL:
                block = AxialBlock(
                    filters, num_heads=axial_num_heads, max_span=axial_max_span, **common
                )
            else:
                block = BottleneckBlock(filters, atrous_rate=atrous_rate, **common)
            setattr(self, f"_block{index + 1}", block)

    @property
    def output_channels(self) -> int:
        return EXPANSION * self._filters

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies the blocks in order.

        Args:
            inputs: float [batch, height, width, channels], not activated.
            training: whether batch norm and drop path run in training mode.

        Returns:
            float [batch, ceil(height / strides), ceil(width / strides), 4 * filters], not
            activated.
        """
        x = inputs
        for index in range(self._num_blocks):
            x = getattr(self, f"_block{index + 1}")(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self._filters,
            block_types=list(self._block_types),
            strides=self._strides,
            atrous_rate=self._atrous_rate,
            drop_path_keep_probs=list(self._drop_path_keep_probs),
            activation=self._activation,
            axial_num_heads=self._axial_num_heads,
            axial_max_span=self._axial_max_span,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
