"""Convolution + batch norm + activation with DeepLab's symmetric padding.

`Conv2DSame` pads strided convolutions symmetrically (DeepLab2 `Conv2DSame`), so that an
input of size 4k+1 gives (4k+1-1)/s+1 outputs at stride s and the kernel centre stays on
the sampled pixels; with stride 1 it is an ordinary 'same' convolution.
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import activations, normalization


def symmetric_padding(kernel_size: int, atrous_rate: int) -> tuple[int, int]:
    """Returns (before, after) zero padding that keeps a dilated kernel centred."""
    effective_size = kernel_size + (kernel_size - 1) * (atrous_rate - 1)
    total = effective_size - 1
    return total // 2, total - total // 2


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class Conv2DSame(tf_keras.layers.Layer):
    """2D convolution with symmetric 'same' padding, optional batch norm and activation.

    Sublayers: `_zeropad` (strided only), `_conv`, `_batch_norm` (with `use_bn`).
    """

    def __init__(
        self,
        output_channels: int,
        kernel_size: int,
        name: str,
        strides: int = 1,
        atrous_rate: int = 1,
        use_bias: bool = True,
        use_bn: bool = False,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        bn_gamma_initializer: str = "ones",
        activation: str = "none",
        kernel_initializer: str = "he_normal",
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            output_channels: number of filters.
            kernel_size: side of the square kernel.
            name: layer name (scopes its variables).
            strides: convolution stride.
            atrous_rate: dilation rate.
            use_bias: whether the convolution has a bias (not allowed with use_bn).
            use_bn: whether a batch norm follows the convolution.
            norm_layer: batch-norm factory (or its config); None for the default.
            bn_gamma_initializer: initializer of the batch-norm scale ('zeros' for the last
                batch norm of a residual branch).
            activation: activation after the (normalised) convolution, see
                `activations.ACTIVATIONS`.
            kernel_initializer: initializer of the convolution kernel.
            **kwargs: passed to `tf_keras.layers.Layer` (e.g. dtype).

        Raises:
            ValueError: use_bias and use_bn are both set, or a size is not positive.
        """
        super().__init__(name=name, **kwargs)
        if use_bias and use_bn:
            raise ValueError(f"{name}: a convolution followed by batch norm takes no bias")
        if min(output_channels, kernel_size, strides, atrous_rate) < 1:
            raise ValueError(
                f"{name}: output_channels, kernel_size, strides and atrous_rate must be "
                f"positive, got {output_channels}, {kernel_size}, {strides}, {atrous_rate}"
            )
        self._output_channels = output_channels
        self._kernel_size = kernel_size
        self._strides = strides
        self._atrous_rate = atrous_rate
        self._use_bias = use_bias
        self._use_bn = use_bn
        self._norm_layer = normalization.resolve(norm_layer)
        self._bn_gamma_initializer = bn_gamma_initializer
        self._activation = activation
        self._kernel_initializer = kernel_initializer
        self._activation_fn = activations.get_activation(activation)

        padding = "same"
        if strides > 1:
            pad = symmetric_padding(kernel_size, atrous_rate)
            self._zeropad = tf_keras.layers.ZeroPadding2D(padding=(pad, pad), name="zeropad")
            padding = "valid"
        self._conv = tf_keras.layers.Conv2D(
            output_channels,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=atrous_rate,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            name="conv",
        )
        if use_bn:
            self._batch_norm = self._norm_layer(
                axis=-1, name="batch_norm", gamma_initializer=bn_gamma_initializer
            )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies the layer.

        Args:
            inputs: float [batch, height, width, in_channels].
            training: whether batch norm uses batch statistics.

        Returns:
            float [batch, ceil(height / strides), ceil(width / strides), output_channels].
        """
        x = inputs
        if self._strides > 1:
            x = self._zeropad(x)
        x = self._conv(x)
        if self._use_bn:
            x = self._batch_norm(x, training=training)
        return self._activation_fn(x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            output_channels=self._output_channels,
            kernel_size=self._kernel_size,
            strides=self._strides,
            atrous_rate=self._atrous_rate,
            use_bias=self._use_bias,
            use_bn=self._use_bn,
            norm_layer=self._norm_layer.get_config(),
            bn_gamma_initializer=self._bn_gamma_initializer,
            activation=self._activation,
            kernel_initializer=self._kernel_initializer,
        )
        return config
