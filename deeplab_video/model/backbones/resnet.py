"""ResNet-50 as DeepLab2's kMaX-DeepLab uses it, and the (Axial-)ResNet class behind it.

DeepLab2 `model/pixel_encoder/axial_resnet.py` (`resnet50`, built by
`model/encoder/axial_resnet.py`) differs from the classic ResNet-50 in three ways, all kept
here: the 7x7/2 stem convolution has batch norm but no max pooling follows it (the first
block of every stage strides instead); blocks take non-activated inputs and the endpoints
are the non-activated sums; the last batch norm of every branch starts at zero. Drop path
uses DeepLab2's linear schedule over stages, applied only to blocks at stride >= 16.

[1] Deep Residual Learning for Image Recognition, CVPR 2016.
    Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun.
"""

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import (
    activations,
    axial_attention,
    blocks,
    convolutions,
    drop_path,
    normalization,
    stems,
)
from deeplab_video.protos import model_pb2

BASIC_STEM = "basic"
INCEPTION_STEM = "inception"
# Blocks per stage and base width per stage (each stage outputs 4x) of ResNet-50.
RESNET50_NUM_BLOCKS = (3, 4, 6, 3)
RESNET50_FILTERS = (64, 128, 256, 512)
# Output channels of the 7x7 stem (the Inception stem's first convolutions have as many).
STEM_CHANNELS = 64
# Drop path applies to blocks whose input is at this stride or coarser (DeepLab2).
DROP_PATH_BEYOND_STRIDE = 16
# Number of the last stage in the linear drop-path schedule (stride 32 = stage 4).
_NUM_SCHEDULE_STAGES = 4


def block_plan(
    num_blocks: int, input_stride: int, use_axial_beyond_stride: int, last_keep_prob: float
) -> tuple[list[str], list[float]]:
    """Block types and drop-path keep probabilities of one stage (the first block strides 2).

    A block is axial when the stride of its input is >= use_axial_beyond_stride > 0, and it
    drops paths when that stride is >= DROP_PATH_BEYOND_STRIDE, with the keep probability
    of stage log2(stride) - 1 of a linear schedule ending at `last_keep_prob` (DeepLab2).

    Args:
        num_blocks: blocks in the stage.
        input_stride: stride of the stage's input (2, 4, 8 or 16).
        use_axial_beyond_stride: see above; 0 disables axial blocks.
        last_keep_prob: keep probability at stride 32.

    Returns:
        (block types, keep probabilities), one entry per block.
    """
    types, keep_probs = [], []
    for index in range(num_blocks):
        stride = input_stride if index == 0 else 2 * input_stride
        axial = use_axial_beyond_stride > 0 and stride >= use_axial_beyond_stride
        types.append(blocks.AXIAL if axial else blocks.BOTTLENECK)
        keep_prob = 1.0
        if stride >= DROP_PATH_BEYOND_STRIDE:
            stage = int(round(math.log2(stride))) - 1
            keep_prob = drop_path.linear_keep_prob(last_keep_prob, stage, _NUM_SCHEDULE_STAGES)
        keep_probs.append(keep_prob)
    return types, keep_probs


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class ResNet(tf_keras.Model):
    """A stem and four block groups (strides 4, 8, 16, 32) of bottleneck or axial blocks.

    Sublayers: `_stem`, `_stage2` .. `_stage5` (DeepLab2's names).
    """

    def __init__(
        self,
        num_blocks: Sequence[int] = RESNET50_NUM_BLOCKS,
        filters: Sequence[int] = RESNET50_FILTERS,
        stem: str = BASIC_STEM,
        stem_channels: int = STEM_CHANNELS,
        use_axial_beyond_stride: int = 0,
        activation: str = "relu",
        drop_path_keep_prob: float = 1.0,
        axial_num_heads: int = 8,
        axial_max_span: int = axial_attention.MAX_SPAN,
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        name: str = "resnet",
        **kwargs: Any,
    ):
        """Initializes the backbone.

        Args:
            num_blocks: blocks of stages 2..5.
            filters: base width of stages 2..5; stage k outputs 4 * filters[k - 2].
            stem: BASIC_STEM (7x7/2 convolution + batch norm, stem_channels outputs) or
                INCEPTION_STEM (three 3x3 convolutions, 2 * stem_channels outputs).
            stem_channels: see stem.
            use_axial_beyond_stride: blocks whose input stride is >= this use axial
                attention instead of the 3x3 convolution; 0 disables.
            activation: see `activations.ACTIVATIONS`.
            drop_path_keep_prob: drop-path keep probability at stride 32.
            axial_num_heads: attention heads of axial blocks.
            axial_max_span: relative-position span of axial blocks.
            norm_layer: batch-norm factory (or its config); None for the default.
            name: model name.
            **kwargs: passed to `tf_keras.Model` (dtype).

        Raises:
            ValueError: not four stages, an unknown stem or activation, or a keep
                probability outside (0, 1].
        """
        super().__init__(name=name, **kwargs)
        if len(num_blocks) != 4 or len(filters) != 4:
            raise ValueError(
                f"{name}: num_blocks and filters need 4 entries (strides 4..32), got "
                f"{list(num_blocks)} and {list(filters)}"
            )
        drop_path.check_keep_prob(drop_path_keep_prob, name)
        activations.get_activation(activation)
        self._num_blocks = [int(n) for n in num_blocks]
        self._filters = [int(f) for f in filters]
        self._stem_type = stem
        self._stem_channels = stem_channels
        self._use_axial_beyond_stride = use_axial_beyond_stride
        self._activation = activation
        self._drop_path_keep_prob = drop_path_keep_prob
        self._axial_num_heads = axial_num_heads
        self._axial_max_span = axial_max_span
        self._norm_layer = normalization.resolve(norm_layer)

        if stem == BASIC_STEM:
            self._stem = convolutions.Conv2DSame(
                stem_channels,
                7,
                "stem",
                strides=2,
                use_bias=False,
                use_bn=True,
                norm_layer=self._norm_layer,
            )
        elif stem == INCEPTION_STEM:
            self._stem = stems.InceptionStem(
                stem_channels, activation=activation, norm_layer=self._norm_layer, name="stem"
            )
        else:
            raise ValueError(
                f"{name}: unknown stem '{stem}'; expected {BASIC_STEM} or {INCEPTION_STEM}"
            )
        for index, (stage_blocks, stage_filters) in enumerate(
            zip(self._num_blocks, self._filters, strict=True)
        ):
            block_types, keep_probs = block_plan(
                stage_blocks, 2 ** (index + 1), use_axial_beyond_stride, drop_path_keep_prob
            )
            stage = blocks.BlockGroup(
                stage_filters,
                block_types,
                strides=2,
                drop_path_keep_probs=keep_probs,
                activation=activation,
                axial_num_heads=axial_num_heads,
                axial_max_span=axial_max_span,
                norm_layer=self._norm_layer,
                name=f"stage{index + 2}",
            )
            setattr(self, f"_stage{index + 2}", stage)

    @property
    def output_specs(self) -> dict[str, int]:
        """Channels of every endpoint."""
        specs = {factory.RES1: self._stem_output_channels()}
        for endpoint, width in zip(factory.ENDPOINTS, self._filters, strict=True):
            specs[endpoint] = blocks.EXPANSION * width
        return specs

    def _stem_output_channels(self) -> int:
        if self._stem_type == INCEPTION_STEM:
            return self._stem.output_channels
        return self._stem_channels

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        """Computes the endpoints.

        Args:
            inputs: float32 [batch, height, width, 3], normalised images.
            training: whether batch norm and drop path run in training mode.

        Returns:
            {RES1..RES5: float [batch, ceil(height / s), ceil(width / s), output_specs[k]]}
            at strides s = 2 (the stem), 4, 8, 16, 32, not activated.
        """
        x = self._stem(inputs, training=training)
        endpoints = {factory.RES1: x}
        for index, endpoint in enumerate(factory.ENDPOINTS):
            x = getattr(self, f"_stage{index + 2}")(x, training=training)
            endpoints[endpoint] = x
        return endpoints

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_blocks": list(self._num_blocks),
            "filters": list(self._filters),
            "stem": self._stem_type,
            "stem_channels": self._stem_channels,
            "use_axial_beyond_stride": self._use_axial_beyond_stride,
            "activation": self._activation,
            "drop_path_keep_prob": self._drop_path_keep_prob,
            "axial_num_heads": self._axial_num_heads,
            "axial_max_span": self._axial_max_span,
            "norm_layer": self._norm_layer.get_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ResNet":
        return cls(**config)


def scaled_stages(options: model_pb2.BackboneOptions) -> tuple[list[int], list[int]]:
    """ResNet-50's blocks and widths per stage, scaled by the options' multipliers."""
    num_blocks = [factory.scale_depth(n, options.depth_multiplier) for n in RESNET50_NUM_BLOCKS]
    filters = [factory.scale_width(f, options.width_multiplier) for f in RESNET50_FILTERS]
    return num_blocks, filters


@factory.register_backbone("resnet50")
def build_resnet50(
    options: model_pb2.BackboneOptions, norm_layer: normalization.BatchNormFactory
) -> ResNet:
    """DeepLab2's kMaX ResNet-50: 7x7 stem, ReLU, bottleneck blocks only."""
    num_blocks, filters = scaled_stages(options)
    return ResNet(
        num_blocks=num_blocks,
        filters=filters,
        stem=BASIC_STEM,
        stem_channels=factory.scale_width(STEM_CHANNELS, options.width_multiplier),
        activation="relu",
        drop_path_keep_prob=options.drop_path_keep_prob,
        norm_layer=norm_layer,
        name="resnet50",
    )
