"""Fuses a coarse decoder feature into a finer skip connection (DeepLab2 `ResizedFuse`).

Each input whose width differs from the output's is activated and projected by a 1x1
convolution + batch norm; the coarse input is then resized (bilinear, aligned corners) to
the skip connection's size, and the two are summed.
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.layers import (
    activations,
    convolutions,
    normalization,
    resizing,
    shapes,
)


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class ResizedFuse(tf_keras.layers.Layer):
    """coarse -> act -> 1x1+BN -> resize, plus skip -> act -> 1x1+BN.

    Sublayers: `_resized_conv_bn1` (coarse) and `_resized_conv_bn2` (skip), each only when
    that input's channels differ from `num_channels`.
    """

    def __init__(
        self,
        num_channels: int,
        activation: str = "gelu",
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        **kwargs: Any,
    ):
        """Initializes the layer.

        Args:
            num_channels: channels of the output.
            activation: applied to each input before its projection.
            norm_layer: batch-norm factory (or its config); None for the default.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._num_channels = num_channels
        self._activation = activation
        self._activation_fn = activations.get_activation(activation)
        self._norm_layer = normalization.resolve(norm_layer)

    def build(self, input_shape: Any) -> None:
        self._projections = []
        for index, shape in enumerate(input_shape):
            projection = None
            if tf.TensorShape(shape)[-1] != self._num_channels:
                projection = convolutions.Conv2DSame(
                    self._num_channels,
                    1,
                    f"resized_conv_bn{index + 1}",
                    use_bias=False,
                    use_bn=True,
                    norm_layer=self._norm_layer,
                )
                setattr(self, f"_resized_conv_bn{index + 1}", projection)
            self._projections.append(projection)
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """Fuses the two features.

        Args:
            inputs: (coarse float [batch, h, w, c1], skip float [batch, H, W, c2]).
            training: whether batch norms use batch statistics.

        Returns:
            float [batch, H, W, num_channels].
        """
        coarse, skip = inputs
        size = (shapes.dimension(skip, 1), shapes.dimension(skip, 2))
        outputs = []
        for feature, projection in zip((coarse, skip), self._projections, strict=True):
            if projection is not None:
                feature = projection(self._activation_fn(feature), training=training)
            outputs.append(resizing.resize_align_corners(feature, size))
        return outputs[0] + outputs[1]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_channels=self._num_channels,
            activation=self._activation,
            norm_layer=self._norm_layer.get_config(),
        )
        return config
