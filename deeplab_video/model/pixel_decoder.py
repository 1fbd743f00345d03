"""The kMaX-DeepLab pixel decoder (DeepLab2 `model/pixel_decoder/kmax.py`).

Starting from the backbone's stride-32 feature, four stages of residual blocks (axial
blocks at strides 32 and 16, bottleneck blocks at 8 and 4 by default) alternate with
`ResizedFuse` skip connections that upsample the decoder feature to the next backbone
endpoint's size and add it. Every backbone endpoint is layer-normalised first. A fifth
stage, when configured, continues at the backbone's stem output (RES1: stride 2 for the
ResNets, 4 for ConvNeXt), as DeepLab2's Cityscapes kMaX-DeepLab does; the prediction head
then reads that stage. All blocks
use GELU; the bottleneck blocks' 3x3 convolutions are dilated by
`bottleneck_atrous_rate`: 2 as DeepLab2 builds them, 1 in the official PyTorch Video-kMaX.
With self-attention in the axial stages the decoder doubles as the pixel-space transformer
encoder.

[1] k-means Mask Transformer, ECCV 2022.
    Qihang Yu, Huiyu Wang, Siyuan Qiao, Maxwell Collins, Yukun Zhu, Hartwig Adam,
    Alan Yuille, Liang-Chieh Chen.
[2] Video-kMaX: A Simple Unified Approach for Online and Near-Online Video Panoptic
    Segmentation, WACV 2024.
    Inkyu Shin, Dahun Kim, Qihang Yu, Jun Xie, Hong-Seok Kim, Bradley Green, In So Kweon,
    Kuk-Jin Yoon, Liang-Chieh Chen.
"""

from typing import Any

import tensorflow as tf
import tf_keras
from google.protobuf import text_format

from deeplab_video import config
from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import (
    axial_attention,
    blocks,
    drop_path,
    normalization,
    resized_fuse,
)
from deeplab_video.protos import model_pb2

# Output endpoints: float [batch, ceil(H / s), ceil(W / s), channels], not activated.
DECODER_OS32 = "decoder_os32"
DECODER_OS16 = "decoder_os16"
DECODER_OS8 = "decoder_os8"
DECODER_OS4 = "decoder_os4"
# The optional fifth stage, at the backbone's stem output (factory.RES1).
DECODER_STEM = "decoder_stem"
DECODER_ENDPOINTS = (DECODER_OS32, DECODER_OS16, DECODER_OS8, DECODER_OS4)
# The last stage's output (DECODER_OS4 or DECODER_STEM): what the prediction head reads.
DECODER_OUTPUT = "decoder_output"
# Backbone endpoint that feeds each stage (stage 0 directly, later stages by skip).
_BACKBONE_ENDPOINTS = (factory.RES5, factory.RES4, factory.RES3, factory.RES2, factory.RES1)
_STAGE_ENDPOINTS = DECODER_ENDPOINTS + (DECODER_STEM,)
# Stage names (they name the layers): the stride, or "stem" for the fifth stage.
_STAGE_NAMES = ("os32", "os16", "os8", "os4", "stem")
NUM_STAGES = (4, 5)
ACTIVATION = "gelu"
_FIELDS = ("num_blocks", "block_types", "channels")


def stage_settings(
    options: model_pb2.PixelDecoderOptions,
) -> tuple[list[int], list[str], list[int]]:
    """(num_blocks, block_types, channels) per stage; empty fields take the config defaults.

    Raises:
        ValueError: the fields do not all have 4 (strides 32..4) or all 5 entries (plus
            the stem stage), or hold an invalid value.
    """
    defaults = {
        path.rsplit(".", 1)[1]: value
        for path, value in config.REPEATED_DEFAULTS
        if path.startswith("model_options.pixel_decoder.")
    }
    settings = [list(getattr(options, field) or defaults[field]) for field in _FIELDS]
    lengths = {len(values) for values in settings}
    if len(lengths) != 1 or lengths.pop() not in NUM_STAGES:
        raise ValueError(
            "pixel_decoder num_blocks, block_types and channels need one entry per stage: "
            f"4 (strides 32, 16, 8, 4) or 5 (and the stem), got {settings}"
        )
    num_blocks, block_types, channels = settings
    if min(num_blocks) < 1 or min(channels) < 1:
        raise ValueError(
            f"pixel_decoder num_blocks and channels must be positive, got {num_blocks} and "
            f"{channels}"
        )
    unknown = sorted(set(block_types) - set(blocks.BLOCK_TYPES))
    if unknown:
        raise ValueError(
            f"pixel_decoder.block_types: unknown {unknown}; expected "
            + ", ".join(blocks.BLOCK_TYPES)
        )
    return num_blocks, block_types, channels


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class KMaXPixelDecoder(tf_keras.Model):
    """kMaX pixel decoder over the backbone endpoints RES2..RES5.

    Sublayers (DeepLab2's names): `_backbone_norms` (one layer norm per endpoint, stride
    32 first), `_stages` (four or five `BlockGroup`s) and `_skip_connections` (one fewer
    `ResizedFuse`).
    """

    def __init__(
        self,
        options: model_pb2.PixelDecoderOptions,
        input_channels: dict[str, int],
        norm_layer: normalization.BatchNormFactory | dict | None = None,
        name: str = "pixel_decoder",
        axial_num_heads: int = 8,
        axial_max_span: int = axial_attention.MAX_SPAN,
        **kwargs: Any,
    ):
        """Initializes the decoder.

        Args:
            options: blocks, block types and widths per stage (strides 32, 16, 8, 4 and
                optionally the stem) and the drop-path keep probability of every block.
                Stage k outputs 4 * channels[k].
            input_channels: channels of each backbone endpoint (the backbone's
                `output_specs`); must hold RES2..RES5, and RES1 for a fifth stage.
            norm_layer: batch-norm factory (or its config); None for the default.
            name: model name.
            axial_num_heads: attention heads of the axial blocks.
            axial_max_span: relative-position span of the axial blocks.
            **kwargs: passed to `tf_keras.Model` (dtype).

        Raises:
            ValueError: invalid options, missing input endpoints, or axial widths not
                divisible by the number of heads.
        """
        super().__init__(name=name, **kwargs)
        num_blocks, block_types, channels = stage_settings(options)
        drop_path.check_keep_prob(options.drop_path_keep_prob, f"{name} (pixel_decoder)")
        if options.bottleneck_atrous_rate < 1:
            raise ValueError(
                f"{name}: pixel_decoder.bottleneck_atrous_rate must be >= 1, got "
                f"{options.bottleneck_atrous_rate}"
            )
        self._num_stages = len(channels)
        inputs = _BACKBONE_ENDPOINTS[: self._num_stages]
        missing = sorted(e for e in inputs if e not in input_channels)
        if missing:
            raise ValueError(f"{name}: input_channels lacks backbone endpoints {missing}")
        for block_type, width, stage in zip(block_types, channels, _STAGE_NAMES, strict=False):
            if block_type == blocks.AXIAL and width % axial_num_heads:
                raise ValueError(
                    f"{name}: axial stage {stage} has {width} channels, not divisible by "
                    f"{axial_num_heads} heads"
                )
        self._options = model_pb2.PixelDecoderOptions()
        self._options.CopyFrom(options)
        self._input_channels = {e: int(input_channels[e]) for e in inputs}
        self._norm_layer = normalization.resolve(norm_layer)
        self._axial_num_heads = axial_num_heads
        self._axial_max_span = axial_max_span
        self._channels = channels

        stage_names = _STAGE_NAMES[: self._num_stages]
        self._backbone_norms = [
            normalization.layer_norm(f"backbone_norm_{stage}") for stage in stage_names
        ]
        self._stages = []
        for stage, stage_name in enumerate(stage_names):
            self._stages.append(
                blocks.BlockGroup(
                    channels[stage],
                    [block_types[stage]] * num_blocks[stage],
                    atrous_rate=options.bottleneck_atrous_rate,
                    drop_path_keep_probs=[options.drop_path_keep_prob] * num_blocks[stage],
                    activation=ACTIVATION,
                    axial_num_heads=axial_num_heads,
                    axial_max_span=axial_max_span,
                    norm_layer=self._norm_layer,
                    name=f"stage_{stage_name}",
                )
            )
        self._skip_connections = [
            resized_fuse.ResizedFuse(
                channels[stage + 1],
                activation=ACTIVATION,
                norm_layer=self._norm_layer,
                name=f"skip_connection_{stage_names[stage + 1]}",
            )
            for stage in range(self._num_stages - 1)
        ]

    @property
    def output_specs(self) -> dict[str, int]:
        """Channels of every decoder endpoint (DECODER_OUTPUT included)."""
        specs = {
            endpoint: blocks.EXPANSION * width
            for endpoint, width in zip(_STAGE_ENDPOINTS, self._channels, strict=False)
        }
        specs[DECODER_OUTPUT] = blocks.EXPANSION * self._channels[-1]
        return specs

    def call(
        self, endpoints: dict[str, tf.Tensor], training: bool | None = None
    ) -> dict[str, tf.Tensor]:
        """Decodes the backbone endpoints.

        Args:
            endpoints: backbone features {RES2..RES5 (and RES1 for a fifth stage): float
                [batch, ceil(H / s), ceil(W / s), input_channels[k]]}; other keys are
                passed through.
            training: whether batch norm and drop path run in training mode.

        Returns:
            A copy of `endpoints` plus {DECODER_OS32 .. DECODER_OS4 (and DECODER_STEM):
            float [batch, ceil(H / s), ceil(W / s), output_specs[k]]}, non-activated, each
            of the size of the backbone endpoint it is fused with; DECODER_OUTPUT is the
            last of them.
        """
        endpoints = dict(endpoints)
        x = self._backbone_norms[0](endpoints[_BACKBONE_ENDPOINTS[0]])
        for stage, output in enumerate(_STAGE_ENDPOINTS[: self._num_stages]):
            if stage > 0:
                skip = self._backbone_norms[stage](endpoints[_BACKBONE_ENDPOINTS[stage]])
                x = self._skip_connections[stage - 1]((x, skip), training=training)
            x = self._stages[stage](x, training=training)
            endpoints[output] = x
        endpoints[DECODER_OUTPUT] = x
        return endpoints

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": text_format.MessageToString(self._options),
            "input_channels": dict(self._input_channels),
            "norm_layer": self._norm_layer.get_config(),
            "axial_num_heads": self._axial_num_heads,
            "axial_max_span": self._axial_max_span,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "KMaXPixelDecoder":
        config = dict(config)
        config["options"] = text_format.Parse(config["options"], model_pb2.PixelDecoderOptions())
        return cls(**config)
