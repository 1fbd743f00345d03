"""The official PyTorch Video-kMaX checkpoints in our variables: one key table, one place.

The authors' code (github.com/dlsrbgg33/video_kmax, detectron2) names its tensors after its
modules (`backbone.res2.0.conv1.weight`, `sem_seg_head.predictor._kmax_transformer_layers.
3._predcitor._transformer_class_head.conv.weight`, ...) and stores them in PyTorch layouts.
This module maps such a state dict onto our checkpoint keys (the object paths of
`model.checkpoint_items`, e.g. `backbone/_stage2/_block1/_conv1_bn_act/_conv/kernel`) and
layouts:

- 2D convolutions OIHW -> HWIO (ConvNeXt's grouped 7x7 [C, 1, k, k] -> [k, k, 1, C]);
  1x1 `Conv1d` [O, I, 1] -> [1, 1, I, O], or [I, O] where we keep a matrix (axial qkv);
  depthwise 5x5 [C, 1, k, k] -> `DepthwiseConv2D` [k, k, C, 1]; `Linear` [O, I] -> [I, O];
- the cluster centres, an `Embedding(channels, queries)`, [C, N] -> [N, C];
- batch norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance,
  reshaped where our batch norm normalises several axes (axial attention similarity [3 *
  heads] -> [3, 1, heads, 1, 1], retrieved output [2 * C] -> [2, 1, heads, 1, C / heads]);
  ConvNeXt's layer scale [C] -> [1, 1, 1, C];
- the official module-name typo `_predcitor` is accepted beside `_predictor`.

`assign` gives, for each of our variables, the official tensor and its layout change (a
`weight_mapping.Assignment`, as `pretrained.load_pretrained` takes them); `unused_reason`
says why an official tensor filled nothing: the `num_batches_tracked` counters, the
training-only auxiliary semantic predictor of the COCO configs, or no counterpart.
"""

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from deeplab_video.model import weight_mapping

# Top-level prefixes of the official VideokMaX state dict.
OFFICIAL_PREFIXES = ("backbone.", "sem_seg_head.")
_BATCH_NORM = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_LAYER_NORM = {"weight": "gamma", "bias": "beta"}
COUNTER_SUFFIX = ".num_batches_tracked"
AUXILIARY_PREFIX = "sem_seg_head.predictor._auxiliary_semantic_predictor."
UNUSED_COUNTER = "batch-norm step counter (no inference meaning)"
UNUSED_AUXILIARY = "training-only auxiliary semantic predictor (not in the inference network)"
UNUSED_NO_COUNTERPART = "no counterpart in this model"
_LAYER = re.compile(r"transformer_decoder/_stage_layers/(\d+)/(\d+)/")


# Each layout change maps an official array to ours given our variable's shape; one that
# cannot apply returns its input, which the loader then reports as mismatched.
def _conv(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """OIHW (or Conv1d OI1) -> HWIO."""
    if array.ndim == 3:
        array = array[..., None]
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array


def _depthwise(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """[C, 1, k, k] -> DepthwiseConv2D [k, k, C, 1]."""
    return array.transpose(2, 3, 0, 1) if array.ndim == 4 else array


def _matrix(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Linear [O, I] or Conv1d [O, I, 1] -> [I, O]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return array.T if array.ndim == 2 else array


def _reshape(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Same values in our shape (a batch norm over several axes, a layer scale)."""
    return array.reshape(shape) if array.size == int(np.prod(shape)) else array


LayoutChange = Callable[[np.ndarray, Sequence[int]], np.ndarray]


def _conv_bn(path: str, rest: str) -> tuple[str, LayoutChange] | None:
    """A ConvBN module's `conv.weight`, `conv.bias` or `norm.<param>`."""
    if rest == "conv.weight":
        return f"{path}/_conv/kernel", _conv
    if rest == "conv.bias":
        return f"{path}/_conv/bias", _reshape
    if rest.startswith("norm.") and rest[5:] in _BATCH_NORM:
        return f"{path}/_batch_norm/{_BATCH_NORM[rest[5:]]}", _reshape
    return None


def _batch_norm(path: str, param: str) -> tuple[str, LayoutChange] | None:
    if param in _BATCH_NORM:
        return f"{path}/{_BATCH_NORM[param]}", _reshape
    return None


def _resnet(rest: str) -> tuple[str, LayoutChange] | None:
    """detectron2 Conv2d modules: their own `weight`, and `norm.<param>`."""
    match = re.fullmatch(r"(stem\.conv1|res(\d)\.(\d+)\.(conv1|conv2|conv3|shortcut))\.(.+)", rest)
    if not match:
        return None
    module, stage, block, conv, param = match.groups()
    path = "backbone/_stem"
    if module != "stem.conv1":
        names = {"conv1": "conv1_bn_act", "conv2": "conv2_bn_act", "conv3": "conv3_bn"}
        path = f"backbone/_stage{stage}/_block{int(block) + 1}/_{names.get(conv, conv)}"
    return _conv_bn(path, "conv.weight" if param == "weight" else param)


def _convnext(rest: str, shape: weight_mapping.Shape) -> tuple[str, LayoutChange] | None:
    match = re.fullmatch(r"downsample_layers\.(\d)\.(\d)\.(weight|bias)", rest)
    if match:
        layer, index, param = match.groups()
        path = f"backbone/downsample_layers/{layer}/layer_with_weights-{index}"
        if len(shape) == 4:
            return f"{path}/kernel", _conv
        is_conv = (layer == "0") == (index == "0")
        return (f"{path}/bias" if is_conv else f"{path}/{_LAYER_NORM[param]}"), _reshape
    match = re.fullmatch(r"stages\.(\d)\.(\d+)\.(\w+)(?:\.(weight|bias))?", rest)
    if match:
        stage, block, module, param = match.groups()
        path = f"backbone/stages/{stage}/layer_with_weights-{block}"
        if param is None:
            return (f"{path}/layer_scale", _reshape) if module == "gamma" else None
        if module == "dwconv":
            return f"{path}/depthwise_conv/{'kernel' if param == 'weight' else 'bias'}", (
                _conv if param == "weight" else _reshape
            )
        if module == "norm":
            return f"{path}/norm/{_LAYER_NORM[param]}", _reshape
        if module in ("pwconv1", "pwconv2"):
            dense = f"{path}/pointwise_conv{module[-1]}"
            return (
                (f"{dense}/kernel", _matrix) if param == "weight" else (f"{dense}/bias", _reshape)
            )
    return None


def _pixel_decoder(rest: str) -> tuple[str, LayoutChange] | None:
    match = re.fullmatch(r"_in_norms\.(\d)\.(weight|bias)", rest)
    if match:
        return f"pixel_decoder/_backbone_norms/{match.group(1)}/{_LAYER_NORM[match.group(2)]}", (
            _reshape
        )
    match = re.fullmatch(r"_resized_fuses\.(\d)\._conv_bn_(low|high)\.(.+)", rest)
    if match:
        index, side, param = match.groups()
        suffix = "1" if side == "low" else "2"
        return _conv_bn(f"pixel_decoder/_skip_connections/{index}/_resized_conv_bn{suffix}", param)
    match = re.fullmatch(r"_stages\.(\d)\._blocks\.(\d+)\.(.+)", rest)
    if not match:
        return None
    stage, block, rest = match.groups()
    path = f"pixel_decoder/_stages/{stage}/_block{int(block) + 1}"
    match = re.fullmatch(r"(_conv1_bn_act|_conv2_bn_act|_conv3_bn|_shortcut)\.(.+)", rest)
    if match:
        return _conv_bn(f"{path}/{match.group(1)}", match.group(2))
    match = re.fullmatch(r"_attention\.(_height_axis|_width_axis)\.(.+)", rest)
    if not match:
        return None
    axis, rest = match.groups()
    path = f"{path}/_attention/{axis}"
    if rest == "qkv_transform.conv.weight":
        return f"{path}/qkv_kernel", _matrix
    match = re.fullmatch(r"(_query_rpe|_key_rpe|_value_rpe)\._embeddings\.weight", rest)
    if match:
        return f"{path}/{match.group(1)}/embeddings", _reshape
    match = re.fullmatch(r"(_batch_norm_\w+)\.(\w+)", rest)
    if match:
        return _batch_norm(f"{path}/{match.group(1)}", match.group(2))
    return None


# Official transformer-layer module -> ours, for modules other than the predictor.
_LAYER_MODULES = {
    "_query_conv1_bn_act": "_query_conv1_bn_act",
    "_pixel_conv1_bn_act": "_pixel_conv1_bn_act",
    "_query_qkv_conv_bn": "_query_qkv_conv_bn",
    "_pixel_v_conv_bn": "_cross_attention/_pixel_value_conv_bn",
    "_kmeans_query_conv3_bn": "_cross_attention_conv3_bn",
    "_query_conv3_bn": "_self_attention_conv3_bn",
    "_query_ffn_conv1_bn_act": "_ffn_conv1_bn_act",
    "_query_ffn_conv2_bn": "_ffn_conv2_bn",
}
_LAYER_BATCH_NORMS = {
    "_kmeans_query_batch_norm_retrieved_value": "_cross_attention/_batch_norm_retrieved_value",
    "_query_self_attention._batch_norm_similarity": "_self_attention/_batch_norm_similarity",
    "_query_self_attention._batch_norm_retrieved_value": (
        "_self_attention/_batch_norm_retrieved_value"
    ),
}
# Official predictor (kMaXPredictor) module -> ours (KMaXPredictionHead).
_HEAD_MODULES = {
    "_pixel_space_head_conv1bnact": "_pixel_space_head/_pointwise",
    "_transformer_mask_head": "_transformer_mask_head",
    "_transformer_class_head": "_transformer_class_head",
}


def _prediction_head(path: str, rest: str) -> tuple[str, LayoutChange] | None:
    match = re.fullmatch(r"_pixel_space_head_conv0bnact\.(conv\.weight|norm\.(\w+))", rest)
    if match:
        if match.group(2) is None:
            return f"{path}/_pixel_space_head/_depthwise_conv/depthwise_kernel", _depthwise
        return _batch_norm(f"{path}/_pixel_space_head/_depthwise_batch_norm", match.group(2))
    match = re.fullmatch(r"_pixel_space_head_last_convbn\.(conv\.\w+|norm\.(\w+))", rest)
    if match:
        if match.group(2) is None:
            return _conv_bn(f"{path}/_pixel_space_projection", match.group(1))
        return _batch_norm(f"{path}/_pixel_space_feature_batch_norm", match.group(2))
    match = re.fullmatch(r"_pixel_space_mask_batch_norm\.(\w+)", rest)
    if match:
        return _batch_norm(f"{path}/_pixel_space_mask_batch_norm", match.group(1))
    module, _, param = rest.partition(".")
    if module in _HEAD_MODULES:
        return _conv_bn(f"{path}/{_HEAD_MODULES[module]}", param)
    return None


def _transformer_decoder(rest: str, layer_paths: Sequence[str]) -> tuple[str, LayoutChange] | None:
    if rest == "_cluster_centers.weight":
        return "transformer_decoder/cluster_centers", _matrix
    match = re.fullmatch(r"_(class|mask)_embedding_projection\.(.+)", rest)
    if match:
        return _conv_bn(
            f"transformer_decoder/_{match.group(1)}_embedding_projection", match.group(2)
        )
    match = re.fullmatch(r"_pred(?:ictor|citor)\.(.+)", rest)
    if match:
        return _prediction_head("prediction_head", match.group(1))
    match = re.fullmatch(r"_kmax_transformer_layers\.(\d+)\.(.+)", rest)
    if not match or int(match.group(1)) >= len(layer_paths):
        return None
    path, rest = layer_paths[int(match.group(1))], match.group(2)
    match = re.fullmatch(r"_pred(?:ictor|citor)\.(.+)", rest)
    if match:
        return _prediction_head(f"{path}/_prediction_head", match.group(1))
    for official, ours in _LAYER_BATCH_NORMS.items():
        if rest.startswith(official + "."):
            return _batch_norm(f"{path}/{ours}", rest[len(official) + 1 :])
    module, _, param = rest.partition(".")
    if module in _LAYER_MODULES:
        return _conv_bn(f"{path}/{_LAYER_MODULES[module]}", param)
    return None


def transformer_layer_paths(model_keys: Iterable[str]) -> list[str]:
    """Our decoder layers `transformer_decoder/_stage_layers/<stage>/<index>`, in order."""
    found = {(int(m[1]), int(m[2])) for m in map(_LAYER.match, model_keys) if m}
    return [f"transformer_decoder/_stage_layers/{s}/{i}" for s, i in sorted(found)]


def target(
    name: str, shape: weight_mapping.Shape, layer_paths: Sequence[str], is_convnext: bool
) -> tuple[str, LayoutChange] | None:
    """Our checkpoint key for the official tensor `name`, and its layout change.

    Args:
        name: official state-dict name.
        shape: its shape.
        layer_paths: our decoder layers in order (`transformer_layer_paths`).
        is_convnext: whether the official backbone is ConvNeXt (else ResNet-50).

    Returns:
        (our key, layout change(array, our shape) -> array), or None for tensors that have no
        counterpart (see `unused_reason`).
    """
    if name.endswith(COUNTER_SUFFIX) or name.startswith(AUXILIARY_PREFIX):
        return None
    if name.startswith("backbone."):
        rest = name[len("backbone.") :]
        return _convnext(rest, shape) if is_convnext else _resnet(rest)
    if name.startswith("sem_seg_head.pixel_decoder."):
        return _pixel_decoder(name[len("sem_seg_head.pixel_decoder.") :])
    if name.startswith("sem_seg_head.predictor."):
        return _transformer_decoder(name[len("sem_seg_head.predictor.") :], layer_paths)
    return None


def recognises(shapes: Mapping[str, weight_mapping.Shape]) -> bool:
    """Whether tensors named `shapes` are an official Video-kMaX / kMaX-DeepLab state dict."""
    return any(n.startswith("sem_seg_head.") for n in shapes) and all(
        n.startswith(OFFICIAL_PREFIXES) for n in shapes
    )


def assign(
    model_shapes: Mapping[str, weight_mapping.Shape],
    source_shapes: Mapping[str, weight_mapping.Shape],
) -> dict[str, weight_mapping.Assignment]:
    """The official tensor for each of our variables.

    Args:
        model_shapes: {our checkpoint key: shape} of the variables to fill.
        source_shapes: {official state-dict name: shape}.

    Returns:
        {our key: Assignment}; our keys without an official counterpart are left out.
    """
    layer_paths = transformer_layer_paths(model_shapes)
    is_convnext = any(n.startswith("backbone.downsample_layers.") for n in source_shapes)
    assignments = {}
    for name, shape in source_shapes.items():
        found = target(name, shape, layer_paths, is_convnext)
        if found is None or found[0] not in model_shapes:
            continue
        key, transform = found
        assignments[key] = weight_mapping.Assignment(
            name, functools.partial(transform, shape=tuple(model_shapes[key]))
        )
    return assignments


def unused_reason(name: str) -> str:
    """Why the official tensor `name` filled no variable of ours."""
    if name.endswith(COUNTER_SUFFIX):
        return UNUSED_COUNTER
    if name.startswith(AUXILIARY_PREFIX):
        return UNUSED_AUXILIARY
    return UNUSED_NO_COUNTERPART
