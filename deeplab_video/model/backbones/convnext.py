"""ConvNeXt backbones (tiny, small, base, large) as DeepLab2's kMaX-DeepLab builds them.

Follows DeepLab2 `model/pixel_encoder/convnext.py` with `zero_padding_for_downstream`: the
4x4/4 stem and the 2x2/2 downsampling convolutions are preceded by zero padding (1 before
and 2 after for the stem, 0 and 1 for downsampling), so an input of size 4k+1 gives
(4k+1-1)/s+1 outputs at stride s. Blocks: 7x7 depthwise convolution, layer norm, 4x MLP
with GELU, layer scale (init 1e-6), drop path with keep probabilities evenly spaced from
1.0 to the configured value over all blocks. Endpoints are the raw stage outputs.

[1] A ConvNet for the 2020s, CVPR 2022.
    Zhuang Liu, Hanzi Mao, Chao-Yuan Wu, Christoph Feichtenhofer, Trevor Darrell,
    Saining Xie.
"""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import drop_path, normalization
from deeplab_video.protos import model_pb2

# (blocks per stage, channels per stage) of each registered variant.
CONVNEXT_SPECS = {
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnext_large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}
LAYER_SCALE_INIT = 1e-6
DEPTHWISE_KERNEL_SIZE = 7
MLP_EXPANSION = 4
# Zero padding (before, after) of the stem and of the downsampling layers.
STEM_PADDING = (1, 2)
DOWNSAMPLE_PADDING = (0, 1)


def _initializer() -> tf_keras.initializers.Initializer:
    return tf_keras.initializers.TruncatedNormal(stddev=0.02)


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class ConvNeXtBlock(tf_keras.layers.Layer):
    """depthwise 7x7 -> layer norm -> dense 4C -> GELU -> dense C -> layer scale, + input."""

    def __init__(
        self,
        dim: int,
        drop_path_keep_prob: float = 1.0,
        layer_scale_init: float = LAYER_SCALE_INIT,
        **kwargs: Any,
    ):
        """Initializes the block.

        Args:
            dim: channels of the input and output.
            drop_path_keep_prob: keep probability of the residual branch.
            layer_scale_init: initial value of the per-channel branch scale.
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).
        """
        super().__init__(**kwargs)
        self._dim = dim
        self._drop_path_keep_prob = drop_path_keep_prob
        self._layer_scale_init = layer_scale_init
        self.depthwise_conv = tf_keras.layers.Conv2D(
            dim,
            DEPTHWISE_KERNEL_SIZE,
            padding="same",
            groups=dim,
            kernel_initializer=_initializer(),
            name="depthwise_conv",
        )
        self.norm = normalization.layer_norm("norm")
        self.pointwise_conv1 = tf_keras.layers.Dense(
            MLP_EXPANSION * dim, kernel_initializer=_initializer(), name="pointwise_conv1"
        )
        self.pointwise_conv2 = tf_keras.layers.Dense(
            dim, kernel_initializer=_initializer(), name="pointwise_conv2"
        )
        self.drop_path = drop_path.DropPath(drop_path_keep_prob, name="drop_path")

    def build(self, input_shape: tf.TensorShape) -> None:
        self.gamma = self.add_weight(
            name="layer_scale",
            shape=(1, 1, 1, self._dim),
            initializer=tf_keras.initializers.Constant(self._layer_scale_init),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies the block.

        Args:
            inputs: float [batch, height, width, dim].
            training: whether drop path is active.

        Returns:
            float [batch, height, width, dim].
        """
        x = self.norm(self.depthwise_conv(inputs))
        x = self.pointwise_conv2(tf.nn.gelu(self.pointwise_conv1(x), approximate=False))
        return inputs + self.drop_path(self.gamma * x, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            dim=self._dim,
            drop_path_keep_prob=self._drop_path_keep_prob,
            layer_scale_init=self._layer_scale_init,
        )
        return config


def _padding(before_after: tuple[int, int]) -> tf_keras.layers.ZeroPadding2D:
    return tf_keras.layers.ZeroPadding2D(padding=(before_after, before_after), name="zeropad")


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class ConvNeXt(tf_keras.Model):
    """ConvNeXt with four stages at strides 4, 8, 16, 32.

    Sublayers (DeepLab2's names): `downsample_layers` (the stem and three downsampling
    layers) and `stages`, each a list of four `tf_keras.Sequential`.
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        drop_path_keep_prob: float = 1.0,
        layer_scale_init: float = LAYER_SCALE_INIT,
        name: str = "convnext",
        **kwargs: Any,
    ):
        """Initializes the backbone.

        Args:
            depths: blocks of each of the four stages.
            dims: channels of each stage.
            drop_path_keep_prob: keep probability of the last block.
            layer_scale_init: initial value of the blocks' layer scale.
            name: model name.
            **kwargs: passed to `tf_keras.Model` (dtype).

        Raises:
            ValueError: not four stages, or a keep probability outside (0, 1].
        """
        super().__init__(name=name, **kwargs)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(
                f"{name}: depths and dims need 4 entries, got {list(depths)} and {list(dims)}"
            )
        drop_path.check_keep_prob(drop_path_keep_prob, name)
        self._depths = [int(d) for d in depths]
        self._dims = [int(d) for d in dims]
        self._drop_path_keep_prob = drop_path_keep_prob
        self._layer_scale_init = layer_scale_init

        stem = tf_keras.Sequential(
            [
                _padding(STEM_PADDING),
                tf_keras.layers.Conv2D(
                    self._dims[0], 4, strides=4, kernel_initializer=_initializer(), name="conv"
                ),
                normalization.layer_norm("norm"),
            ],
            name="stem",
        )
        self.downsample_layers = [stem]
        for index in range(3):
            self.downsample_layers.append(
                tf_keras.Sequential(
                    [
                        _padding(DOWNSAMPLE_PADDING),
                        normalization.layer_norm("norm"),
                        tf_keras.layers.Conv2D(
                            self._dims[index + 1],
                            2,
                            strides=2,
                            kernel_initializer=_initializer(),
                            name="conv",
                        ),
                    ],
                    name=f"downsampling_block_{index}",
                )
            )
        keep_probs = drop_path.linspace_keep_probs(drop_path_keep_prob, sum(self._depths))
        self.stages = []
        for index, (depth, dim) in enumerate(zip(self._depths, self._dims, strict=True)):
            first = sum(self._depths[:index])
            stage_blocks = [
                ConvNeXtBlock(
                    dim,
                    drop_path_keep_prob=keep_probs[first + block],
                    layer_scale_init=layer_scale_init,
                    name=f"convnext_block_{index}_{block}",
                )
                for block in range(depth)
            ]
            self.stages.append(tf_keras.Sequential(stage_blocks, name=f"convnext_stage_{index}"))

    @property
    def output_specs(self) -> dict[str, int]:
        """Channels of every endpoint."""
        return {
            factory.RES1: self._dims[0],
            **dict(zip(factory.ENDPOINTS, self._dims, strict=True)),
        }

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        """Computes the endpoints.

        Args:
            inputs: float32 [batch, height, width, 3], normalised images.
            training: whether drop path is active.

        Returns:
            {RES2..RES5: float [batch, ceil(height / s), ceil(width / s), output_specs[k]]}
            at strides s = 4, 8, 16, 32, and RES1, the stem's output (stride 4).
        """
        x = inputs
        endpoints = {}
        for endpoint, downsample, stage in zip(
            factory.ENDPOINTS, self.downsample_layers, self.stages, strict=True
        ):
            x = downsample(x)
            if not endpoints:
                endpoints[factory.RES1] = x
            x = stage(x, training=training)
            endpoints[endpoint] = x
        return endpoints

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "depths": list(self._depths),
            "dims": list(self._dims),
            "drop_path_keep_prob": self._drop_path_keep_prob,
            "layer_scale_init": self._layer_scale_init,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ConvNeXt":
        return cls(**config)


def _register(name: str) -> None:
    depths, dims = CONVNEXT_SPECS[name]

    @factory.register_backbone(name)
    def build(
        options: model_pb2.BackboneOptions, norm_layer: normalization.BatchNormFactory
    ) -> ConvNeXt:
        del norm_layer  # ConvNeXt uses layer norm only.
        return ConvNeXt(
            depths=[factory.scale_depth(d, options.depth_multiplier) for d in depths],
            dims=[factory.scale_width(d, options.width_multiplier) for d in dims],
            drop_path_keep_prob=options.drop_path_keep_prob,
            name=name,
        )


for _name in CONVNEXT_SPECS:
    _register(_name)
