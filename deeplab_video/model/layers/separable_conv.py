"""Depthwise-separable convolution with batch norms, as kMaX-DeepLab's heads use it.

DeepLab2 `model/layers/convolutions.py` (`DepthwiseConv2DSame` followed by a 1x1
`Conv2DSame`): a depthwise kxk convolution, batch norm and activation, then a pointwise
1x1 convolution, batch norm and activation.
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import activations, convolutions, normalization


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class SeparableConvBN(tf_keras.layers.Layer):
    """Depthwise kxk convolution + batch norm + activation, then the same with a 1x1."""

    def __init__(
        self,
        output_channels: int,
        kernel_size: int = 5,
        activation: str = "gelu",
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            output_channels: width of the pointwise convolution.
            kernel_size: side of the depthwise kernel (stride 1, 'same' padding).
            activation: applied after both batch norms.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._output_channels = output_channels
        self._kernel_size = kernel_size
        self._activation = activation
        self._activation_fn = activations.get_activation(activation)
        self._norm_layer = normalization.resolve(norm_layer)
        self._depthwise_conv = tf_keras.layers.DepthwiseConv2D(
            kernel_size, padding="same", use_bias=False, name="depthwise_conv"
        )
        self._depthwise_batch_norm = self._norm_layer(axis=-1, name="depthwise_batch_norm")
        self._pointwise = convolutions.Conv2DSame(
            output_channels,
            kernel_size=1,
            name="pointwise",
            use_bias=False,
            use_bn=True,
            norm_layer=self._norm_layer,
            activation=activation,
        )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """float [batch, height, width, channels] -> [batch, height, width, output_channels]."""
        x = self._depthwise_batch_norm(self._depthwise_conv(inputs), training=training)
        return self._pointwise(self._activation_fn(x), training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            output_channels=self._output_channels,
            kernel_size=self._kernel_size,
            activation=self._activation,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
