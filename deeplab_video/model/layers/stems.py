"""The Inception stem of MaX-DeepLab's Axial-ResNet ("resnet_beta" in DeepLab2).

Three 3x3 convolutions (the first with stride 2) replace ResNet's 7x7 stem (Szegedy et al.,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning").
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import convolutions, normalization


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class InceptionStem(tf_keras.layers.Layer):
    """conv3x3/2 (c) -> conv3x3 (c) -> conv3x3 (2c); the output is not activated."""

    def __init__(
        self,
        channels: int = 64,
        activation: str = "gelu",
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        name: str = "stem",
        **kwargs: Any,
    ):
        """Initializes the stem.

        Args:
            channels: width c of the first two convolutions; the stem outputs 2c channels.
            activation: activation after the first two batch norms.
            norm_layer: batch-norm factory (or its config); None for the default.
            name: layer name.
            **kwargs: passed to `tf_keras.layers.Layer` (dtype).
        """
        super().__init__(name=name, **kwargs)
        self._channels = channels
        self._activation = activation
        self._norm_layer = normalization.resolve(norm_layer)
        common = dict(use_bias=False, use_bn=True, norm_layer=self._norm_layer)
        self._conv1_bn_act = convolutions.Conv2DSame(
            channels, 3, "conv1_bn_act", strides=2, activation=activation, **common
        )
        self._conv2_bn_act = convolutions.Conv2DSame(
            channels, 3, "conv2_bn_act", activation=activation, **common
        )
        self._conv3_bn = convolutions.Conv2DSame(2 * channels, 3, "conv3_bn", **common)

    @property
    def output_channels(self) -> int:
        return 2 * self._channels

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies the stem.

        Args:
            inputs: float [batch, height, width, 3].
            training: whether batch norms use batch statistics.

        Returns:
            float [batch, ceil(height / 2), ceil(width / 2), 2 * channels], not activated.
        """
        x = self._conv1_bn_act(inputs, training=training)
        x = self._conv2_bn_act(x, training=training)
        return self._conv3_bn(x, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            channels=self._channels,
            activation=self._activation,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
