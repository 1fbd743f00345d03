"""Atrous spatial pyramid pooling (DeepLabv3 [1]), as kMaX-DeepLab's semantic branch uses it.

DeepLab2 `model/layers/aspp.py`: a 1x1 branch, three dilated 3x3 branches and an
image-pooling branch, concatenated and projected.

[1] Rethinking Atrous Convolution for Semantic Image Segmentation, arXiv 2017. Liang-Chieh
    Chen, George Papandreou, Florian Schroff, Hartwig Adam.
"""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import convolutions, normalization


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class ASPP(tf_keras.layers.Layer):
    """Atrous spatial pyramid pooling (DeepLabv3): 1x1, three atrous 3x3 and image pooling.

    Sublayers: `conv_bn_act` (1x1), `aspp_conv{1,2,3}` (3x3 atrous), `aspp_pool` (1x1 after
    global average pooling), `proj_conv_bn_act` (1x1 on the concatenation), `proj_drop`.
    """

    def __init__(
        self,
        output_channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        dropout_rate: float = 0.1,
        activation: str = "gelu",
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            output_channels: width of every branch and of the output.
            atrous_rates: dilation rates of the three 3x3 branches.
            dropout_rate: dropout after the projection (training only).
            activation: applied after every batch norm (kMaX-DeepLab: GELU).
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: atrous_rates does not hold three rates.
        """
        super().__init__(**kwargs)
        if len(atrous_rates) != 3:
            raise ValueError(f"{self.name}: ASPP needs three atrous rates, got {atrous_rates}")
        self._output_channels = output_channels
        self._atrous_rates = tuple(int(rate) for rate in atrous_rates)
        self._dropout_rate = dropout_rate
        self._activation = activation
        self._norm_layer = normalization.resolve(norm_layer)

        def conv(name: str, kernel_size: int = 1, rate: int = 1) -> convolutions.Conv2DSame:
            return convolutions.Conv2DSame(
                output_channels,
                kernel_size,
                name=name,
                atrous_rate=rate,
                use_bias=False,
                use_bn=True,
                norm_layer=self._norm_layer,
                activation=self._activation,
            )

        self._branches = [conv("conv_bn_act")] + [
            conv(f"aspp_conv{index}", 3, rate)
            for index, rate in enumerate(self._atrous_rates, start=1)
        ]
        self._aspp_pool = conv("aspp_pool")
        self._proj_conv_bn_act = conv("proj_conv_bn_act")
        self._proj_drop = tf_keras.layers.Dropout(dropout_rate, name="proj_drop")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """float [batch, height, width, channels] -> [batch, height, width, output_channels]."""
        results = [branch(inputs, training=training) for branch in self._branches]
        pooled = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        pooled = self._aspp_pool(pooled, training=training)
        results.append(tf.tile(pooled, [1, tf.shape(inputs)[1], tf.shape(inputs)[2], 1]))
        x = self._proj_conv_bn_act(tf.concat(results, axis=-1), training=training)
        return self._proj_drop(x, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            output_channels=self._output_channels,
            atrous_rates=self._atrous_rates,
            dropout_rate=self._dropout_rate,
            activation=self._activation,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
