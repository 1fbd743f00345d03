"""Axial-ResNet-50: the MaX-S backbone that DeepLab2's kMaX-DeepLab calls axial_resnet50.

DeepLab2 `model/pixel_encoder/axial_resnet.py` builds it as ResNet-50 with the Inception
stem ("resnet_beta"), GELU, and axial-attention blocks for every block whose input is at
stride >= 16 (stage 4 from its second block on, all of stage 5), without the dual-path
transformer of MaX-DeepLab.

[1] MaX-DeepLab: End-to-End Panoptic Segmentation with Mask Transformers, CVPR 2021.
    Huiyu Wang, Yukun Zhu, Hartwig Adam, Alan Yuille, Liang-Chieh Chen.
"""

from deeplab_video.model.backbones import factory, resnet
from deeplab_video.model.layers import normalization
from deeplab_video.protos import model_pb2

# Blocks whose input stride is at least this use axial attention.
USE_AXIAL_BEYOND_STRIDE = 16


@factory.register_backbone("axial_resnet50")
def build_axial_resnet50(
    options: model_pb2.BackboneOptions, norm_layer: normalization.BatchNormFactory
) -> resnet.ResNet:
    """DeepLab2's kMaX Axial-ResNet-50 (MaX-S backbone)."""
    num_blocks, filters = resnet.scaled_stages(options)
    return resnet.ResNet(
        num_blocks=num_blocks,
        filters=filters,
        stem=resnet.INCEPTION_STEM,
        stem_channels=factory.scale_width(resnet.STEM_CHANNELS, options.width_multiplier),
        use_axial_beyond_stride=USE_AXIAL_BEYOND_STRIDE,
        activation="gelu",
        drop_path_keep_prob=options.drop_path_keep_prob,
        norm_layer=norm_layer,
        name="axial_resnet50",
    )
