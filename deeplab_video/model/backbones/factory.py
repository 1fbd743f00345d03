"""Backbone registry: builders register under their config name (TFM `core/registry.py`).

    @factory.register_backbone("resnet50")
    def build_resnet50(options, norm_layer): ...

    backbone = factory.build_backbone(model_options.backbone)
    features = backbone(images, training=False)   # {RES2: ..., RES5: ...}

Every backbone returns the endpoints below, non-activated (DeepLab2's `stage1..stage5`),
and exposes `output_specs`, a dict endpoint -> channels. Widths and depths of the
registered backbones scale with `scale_width` and `scale_depth`.
"""

from collections.abc import Callable

import tf_keras

from deeplab_video.model.layers import normalization
from deeplab_video.protos import model_pb2

# Endpoints every backbone returns: float [batch, ceil(H / s), ceil(W / s), channels] at
# stride s = 4, 8, 16, 32.
RES2 = "res2"
RES3 = "res3"
RES4 = "res4"
RES5 = "res5"
ENDPOINTS = (RES2, RES3, RES4, RES5)
ENDPOINT_STRIDES = {RES2: 4, RES3: 8, RES4: 16, RES5: 32}
# The stem's output, float [batch, ceil(H / s), ceil(W / s), channels], also returned by
# every backbone: stride 2 for the ResNets, 4 for ConvNeXt (its stem is a 4x4/4
# patchify convolution). DeepLab2's Cityscapes kMaX pixel decoder adds a stage there.
RES1 = "res1"
# Channel counts are rounded to multiples of this after width scaling.
CHANNEL_DIVISOR = 8

BackboneBuilder = Callable[
    [model_pb2.BackboneOptions, normalization.BatchNormFactory], tf_keras.Model
]

_REGISTRY: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Returns a decorator that registers a backbone builder under `name`.

    Raises:
        KeyError: (when decorating) `name` is registered already.
    """

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            raise KeyError(
                f"backbone '{name}' is registered twice ({_REGISTRY[name].__module__} and "
                f"{builder.__module__})"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def registered_names() -> tuple[str, ...]:
    """Names of the registered backbones, in registration order."""
    return tuple(_REGISTRY)


def build_backbone(
    options: model_pb2.BackboneOptions,
    norm_layer: normalization.BatchNormFactory | None = None,
) -> tf_keras.Model:
    """Builds the backbone `options.name` (weights are created on its first call).

    Args:
        options: backbone name, widths, depths, drop path and batch-norm settings.
        norm_layer: batch-norm factory shared with the rest of the network; None makes one
            from `options` (sync, momentum, epsilon).

    Returns:
        A Keras model mapping float32 [batch, H, W, 3] images (already normalised) to a
        dict of ENDPOINTS, with an `output_specs` property.

    Raises:
        KeyError: no backbone is registered under `options.name`.
    """
    if options.name not in _REGISTRY:
        raise KeyError(
            f"unknown backbone '{options.name}'; registered: {', '.join(registered_names())}"
        )
    if norm_layer is None:
        norm_layer = normalization.from_backbone_options(options)
    return _REGISTRY[options.name](options, norm_layer)


def scale_width(channels: int, multiplier: float) -> int:
    """Scales a channel count and rounds it to the nearest multiple of CHANNEL_DIVISOR.

    The result is at least CHANNEL_DIVISOR, and never more than 10% below the exact value
    (MobileNet's `make_divisible` rule); multiplier 1.0 keeps multiples of 8 unchanged.
    """
    exact = channels * multiplier
    rounded = max(
        CHANNEL_DIVISOR, int(exact + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR
    )
    if rounded < 0.9 * exact:
        rounded += CHANNEL_DIVISOR
    return rounded


def scale_depth(num_blocks: int, multiplier: float) -> int:
    """Scales a number of blocks, rounded to the nearest integer and at least 1."""
    return max(1, int(round(num_blocks * multiplier)))
