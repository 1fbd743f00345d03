"""DeepLab2 kMaX-DeepLab checkpoints -> our variables: the mapping table.

DeepLab2 (google-research/deeplab2) publishes kMaX-DeepLab checkpoints for COCO panoptic
and Cityscapes with ResNet-50, Axial-ResNet-50 and ConvNeXt-T/S/B/L backbones. They are
`tf.train.Checkpoint(**KMaXDeepLab.checkpoint_items, ...)` files. At one frame (T=1) our
network computes exactly DeepLab2's image kMaX-DeepLab, with these differences in naming
and layout, all handled here:

- the backbone item is called `encoder`; the backbone and the pixel decoder have our
  attribute names below it;
- the decoder layers are one flat list `_kmax_decoder/<k>/_block1_transformer` (ours:
  `_stage_layers/<stage>/<index>`), and their sublayers have other names (`memory_*` for
  our query-side layers, `pixel_v_conv_bn` for the k-means value projection, ...);
- the final prediction head is spread over five top-level items (`pixel_space_head`,
  `transformer_mask_head`, ...), while ours is one `prediction_head`; the pixel-space
  head's 1x1 projection is its `final_conv`;
- 1x1 layers on queries are Conv1D (kernels [1, C, D]; ours [1, 1, C, D]); the cluster
  centres are [1, N, C] (ours [N, C]); the self-attention's retrieved-value batch norm
  keeps [1, heads, 1, C / heads] parameters (ours [C]);
- class logits are ordered things first, then stuff, void last (see CLASS_ORDERS).

Everything else in a DeepLab2 checkpoint (the auxiliary semantic decoder and head, the
optimizer) is training-only and left unused.
"""

import re
from collections.abc import Mapping

from deeplab_video.model import weight_mapping

# Our class id of each class-logit channel of a DeepLab2 kMaX checkpoint (void excluded),
# by the number of class logits. DeepLab2 orders them by its dataset descriptor's
# thing ids, then the other labels except its ignore label.
CLASS_ORDERS = {
    # COCO panoptic: DeepLab2 labels 1..133 (0 is its ignore label), things 1..80; our
    # COCO ids are DeepLab2's minus one, so the order is ours.
    134: tuple(range(133)),
    # Cityscapes: train ids, things 11..18 (person .. bicycle) first.
    20: tuple(range(11, 19)) + tuple(range(11)),
}
# Checkpoint items of DeepLab2's training-only auxiliary semantic branch.
AUXILIARY_ITEMS = ("semantic_decoder/", "semantic_head_without_last_layer/", "semantic_last_layer/")
UNUSED_AUXILIARY = (
    "training-only auxiliary semantic decoder and head (not in the inference network)"
)
UNUSED_NO_COUNTERPART = "no counterpart in this model"
# Keys that only DeepLab2 kMaX-DeepLab checkpoints have.
_SIGNATURE_PREFIXES = ("encoder/", "transformer_decoder/_kmax_decoder/")
_CLASS_HEAD = "transformer_class_head"
_LAYER = re.compile(r"^transformer_decoder/_stage_layers/(\d+)/(\d+)/")
# A decoder layer after renumbering: transformer_decoder/<_LAYER_TAG><k>/...
_LAYER_TAG = "_flat_layer_"
# Our decoder-layer sublayers -> DeepLab2's dual-path transformer layer's.
_LAYER_NAMES = (
    ("_pixel_conv1_bn_act", "_pixel_conv1_bn_act"),
    ("_query_conv1_bn_act", "_memory_conv1_bn_act"),
    ("_cross_attention/_pixel_value_conv_bn", "_pixel_v_conv_bn"),
    ("_cross_attention/_batch_norm_retrieved_value", "_kmeans_memory_batch_norm_retrieved_value"),
    ("_cross_attention_conv3_bn", "_kmeans_memory_conv3_bn"),
    ("_query_qkv_conv_bn", "_memory_qkv_conv_bn"),
    ("_self_attention/_batch_norm_similarity", "_memory_attention/_batch_norm_similarity"),
    ("_self_attention_conv3_bn", "_memory_conv3_bn"),
    ("_ffn_conv1_bn_act", "_memory_ffn_conv1_bn_act"),
    ("_ffn_conv2_bn", "_memory_ffn_conv2_bn"),
)


def recognises(shapes: Mapping[str, weight_mapping.Shape]) -> bool:
    """Whether checkpoint tensors named `shapes` come from DeepLab2's kMaX-DeepLab."""
    return any(key.startswith(_SIGNATURE_PREFIXES) for key in shapes)


def unused_reason(name: str) -> str:
    """Why the DeepLab2 tensor `name` filled no variable of ours."""
    return UNUSED_AUXILIARY if name.startswith(AUXILIARY_ITEMS) else UNUSED_NO_COUNTERPART


def assign(
    model_shapes: Mapping[str, weight_mapping.Shape],
    source_shapes: Mapping[str, weight_mapping.Shape],
) -> dict[str, weight_mapping.Assignment]:
    """The DeepLab2 tensor for each of our variables.

    Args:
        model_shapes: {our checkpoint key: shape} of the variables to fill.
        source_shapes: {DeepLab2 checkpoint key: shape}.

    Returns:
        {our key: Assignment}; keys without a DeepLab2 counterpart are left out.
    """
    renumbered = _renumber_layers(model_shapes)
    assignments = weight_mapping.apply_rules(
        {virtual: model_shapes[key] for key, virtual in renumbered.items()},
        rules(_class_head_width(source_shapes)),
    )
    return {key: assignments[v] for key, v in renumbered.items() if v in assignments}


def rules(class_head_width: int | None) -> list[weight_mapping.Rule]:
    """The mapping table: our keys (decoder layers renumbered) -> DeepLab2 keys.

    Args:
        class_head_width: number of class logits of the checkpoint; selects the class
            order (CLASS_ORDERS); None or an unknown width keeps DeepLab2's order.
    """
    rule = weight_mapping.Rule
    squeeze = weight_mapping.squeeze_to
    classes = squeeze
    order = CLASS_ORDERS.get(class_head_width)
    if order is not None:
        channels = [order.index(c) for c in range(len(order))] + [len(order)]
        classes = weight_mapping.take_last_axis(channels, squeeze)
    layer = rf"transformer_decoder/{_LAYER_TAG}(\d+)/"
    dl2_layer = r"transformer_decoder/_kmax_decoder/\1/_block1_transformer/"
    table = [
        rule(r"backbone/(.*)", r"encoder/\1", squeeze),
        rule(r"pixel_decoder/(.*)", r"pixel_decoder/\1", squeeze),
        rule("transformer_decoder/cluster_centers", "transformer_decoder/cluster_centers", squeeze),
        rule(
            r"transformer_decoder/(_class_embedding_projection|_mask_embedding_projection)/(.*)",
            r"transformer_decoder/\1/\2",
            squeeze,
        ),
        rule(
            layer + r"_self_attention/_batch_norm_retrieved_value/(.*)",
            dl2_layer + r"_memory_attention/_batch_norm_retrieved_value/\2",
            weight_mapping.flatten_to,
        ),
    ]
    table += [
        rule(f"{layer}{ours}/(.*)", rf"{dl2_layer}{theirs}/\2", squeeze)
        for ours, theirs in _LAYER_NAMES
    ]
    aux_predictor = dl2_layer + "_auxiliary_clustering_predictor/_"
    table += _head_rules(layer + "_prediction_head/", aux_predictor, 2, classes)
    table += _head_rules("prediction_head/", "", 1, classes)
    return table


def _head_rules(
    ours: str, theirs: str, group: int, classes: weight_mapping.TransformFactory
) -> list[weight_mapping.Rule]:
    """Rules of one `KMaXPredictionHead`.

    Args:
        ours: our key prefix of the head.
        theirs: DeepLab2's prefix of its MaXDeepLab head; the sublayer names follow it
            directly ("" for the top-level checkpoint items, "..._" for attributes).
        group: number of the regex group that holds the rest of the key.
        classes: the transform of the class-logit layer.
    """
    pixel_head = f"{theirs}pixel_space_head/conv_block/_conv1_bn_act/"
    names = (
        ("_pixel_space_head/_depthwise_conv", pixel_head + "_depthwise/_depthwise_conv"),
        ("_pixel_space_head/_depthwise_batch_norm", pixel_head + "_depthwise/_batch_norm"),
        ("_pixel_space_head/_pointwise", pixel_head + "_pointwise"),
        ("_pixel_space_projection/_conv", f"{theirs}pixel_space_head/final_conv"),
        ("_pixel_space_feature_batch_norm", f"{theirs}pixel_space_feature_batch_norm"),
        ("_pixel_space_mask_batch_norm", f"{theirs}pixel_space_mask_batch_norm"),
        ("_transformer_mask_head", f"{theirs}transformer_mask_head"),
    )
    table = [
        weight_mapping.Rule(f"{ours}{name}/(.*)", rf"{target}/\{group}", weight_mapping.squeeze_to)
        for name, target in names
    ]
    table.append(
        weight_mapping.Rule(
            f"{ours}_{_CLASS_HEAD}/_conv/(.*)", rf"{theirs}{_CLASS_HEAD}/_conv/\{group}", classes
        )
    )
    return table


def _renumber_layers(model_shapes: Mapping[str, weight_mapping.Shape]) -> dict[str, str]:
    """{our key: key with `_stage_layers/<s>/<i>` replaced by one running layer index}."""
    counts: dict[int, int] = {}
    for key in model_shapes:
        match = _LAYER.match(key)
        if match:
            stage, index = int(match[1]), int(match[2])
            counts[stage] = max(counts.get(stage, 0), index + 1)
    offsets = {stage: sum(counts.get(s, 0) for s in range(stage)) for stage in counts}

    def renumber(match: re.Match) -> str:
        flat = offsets[int(match[1])] + int(match[2])
        return f"transformer_decoder/{_LAYER_TAG}{flat}/"

    return {key: _LAYER.sub(renumber, key) for key in model_shapes}


def _class_head_width(source_shapes: Mapping[str, weight_mapping.Shape]) -> int | None:
    bias = source_shapes.get(f"{_CLASS_HEAD}/_conv/bias")
    return int(bias[0]) if bias else None
