"""Tests for deeplab_video.model.deeplab2_mapping against DeepLab2's published layouts.

deeplab2_kmax_variables.json.gz lists, for each checkpoint DeepLab2 publishes for
kMaX-DeepLab (COCO and Cityscapes; ResNet-50, Axial-ResNet-50, ConvNeXt-T/S/B/L), the name
and shape of every variable, as DeepLab2's own code (64bc1c1) writes them: it was made by
scripts/deeplab2_reference.py. The tests map our networks (built from configs/coco and
configs/cityscapes) onto these names, and load checkpoints written with them.
"""

import functools
import gzip
import json
import pathlib

import numpy as np
import pytest

from deeplab_video import config
from deeplab_video.model import builder, deeplab2_mapping, pretrained, tf_checkpoint
from tests import conftest
from tests.model import deeplab2_files

_TABLE = pathlib.Path(__file__).with_name("deeplab2_kmax_variables.json.gz")
_BACKBONES = (
    "resnet50",
    "axial_resnet50",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
)
_CASES = [f"{dataset}:{backbone}" for dataset in ("coco", "cityscapes") for backbone in _BACKBONES]
_FAST = {"coco:resnet50"}  # one full-size build in the default run
_TRAINING_ONLY = deeplab2_mapping.AUXILIARY_ITEMS
# Our checkpoint items a checkpoint for the decoder and heads only fills.
_DECODER_ITEMS = ("transformer_decoder", "prediction_head")


@functools.cache
def _table() -> dict[str, dict[str, tuple[int, ...]]]:
    with gzip.open(_TABLE, "rt", encoding="utf-8") as f:
        return {
            case: {name: tuple(shape) for name, shape in shapes.items()}
            for case, shapes in json.load(f).items()
        }


def _params(cases):
    return [pytest.param(c, marks=() if c in _FAST else pytest.mark.slow) for c in cases]


@functools.lru_cache(maxsize=1)  # one full-size network in memory at a time
def _model(case: str):
    dataset, backbone = case.split(":")
    options = config.load_config(conftest.CONFIG_DIR / dataset / "kmax_resnet50.textproto")
    options.model_options.backbone.name = backbone
    return builder.build_model(options, inference_only=True)


def _model_shapes(model) -> dict[str, tuple[int, ...]]:
    variables = tf_checkpoint.variable_keys(model.checkpoint_items)
    return {key: tuple(v.shape.as_list()) for key, v in variables.items()}


@pytest.mark.parametrize(
    "dataset, queries, mask_size", [("coco", 128, 17), ("cityscapes", 256, 33)]
)
def test_coco_and_cityscapes_configs_build(dataset, queries, mask_size):
    # Full size: the table tests below. Here the configs' structure at the tiny widths:
    # Cityscapes' stem stage gives stride-2 masks (ResNet), COCO's network stride 4.
    full = config.load_config(conftest.CONFIG_DIR / dataset / "kmax_resnet50.textproto")
    assert full.model_options.transformer_decoder.num_queries == queries
    options = deeplab2_files.reduced_options(dataset)
    model = builder.build_model(options, inference_only=True)
    outputs = model(np.zeros([1, 1, 65, 65, 3], np.float32), training=False)
    assert outputs["mask_logits"].shape[2:4] == (mask_size, mask_size)
    assert outputs["class_logits"].shape[-1] == full.model_options.num_classes + 1


def test_the_table_holds_every_published_checkpoint():
    assert sorted(_table()) == sorted(_CASES)
    assert all(deeplab2_mapping.recognises(shapes) for shapes in _table().values())


@pytest.mark.parametrize("case", _params(_CASES))
def test_every_variable_maps_to_a_published_tensor(case):
    published = _table()[case]
    model_shapes = _model_shapes(_model(case))
    assignments = deeplab2_mapping.assign(model_shapes, published)
    assert set(assignments) == set(model_shapes)
    sources = [a.source_key for a in assignments.values()]
    assert len(set(sources)) == len(sources)  # no tensor fills two variables
    for key, assignment in assignments.items():
        assert assignment.source_key in published, key
        value = np.zeros(published[assignment.source_key], np.float32)
        if assignment.transform is not None:
            value = assignment.transform(value)
        assert value.shape == model_shapes[key], (key, assignment.source_key)
    unused = set(published) - set(sources)
    assert unused and all(name.startswith(_TRAINING_ONLY) for name in unused)


@pytest.mark.parametrize("case", _params(["coco:resnet50", "cityscapes:resnet50"]))
def test_checkpoint_in_deeplab2_naming_fills_decoder_and_heads(case, tmp_path):
    model = _model(case)
    published = _table()[case]
    heads = {n: s for n, s in published.items() if not n.startswith(("encoder/", "pixel_decoder/"))}
    tensors = deeplab2_files.random_tensors(heads)
    deeplab2_files.write_checkpoint(str(tmp_path / "ckpt-150000"), tensors)
    report = pretrained.load_pretrained(model, str(tmp_path), _DECODER_ITEMS)
    variables = tf_checkpoint.variable_keys({k: model.checkpoint_items[k] for k in _DECODER_ITEMS})
    assert report.source_format == "deeplab2"
    assert set(report.restored) == set(variables)
    assert report.missing == report.mismatched == ()
    assert all(name.startswith(_TRAINING_ONLY) for name in report.unused)
    assert set(report.unused_reasons.values()) == {deeplab2_mapping.UNUSED_AUXILIARY}

    decoder = "transformer_decoder/_kmax_decoder/"
    # Conv1D kernel [1, C, D] -> ours [1, 1, C, D]; layer 3 = stride 16, second layer.
    np.testing.assert_array_equal(
        variables["transformer_decoder/_stage_layers/1/1/_query_qkv_conv_bn/_conv/kernel"][0],
        tensors[f"{decoder}3/_block1_transformer/_memory_qkv_conv_bn/_conv/kernel"],
    )
    np.testing.assert_array_equal(
        variables["transformer_decoder/cluster_centers"],
        tensors["transformer_decoder/cluster_centers"][0],
    )
    # The self-attention's retrieved-value batch norm: [1, heads, 1, depth] -> [heads * depth].
    np.testing.assert_array_equal(
        variables[
            "transformer_decoder/_stage_layers/2/0/_self_attention/"
            "_batch_norm_retrieved_value/gamma"
        ],
        tensors[
            f"{decoder}4/_block1_transformer/_memory_attention/_batch_norm_retrieved_value/gamma"
        ].reshape(-1),
    )
    # Class logits in our class order (Cityscapes: DeepLab2 puts the 8 things first).
    order = deeplab2_mapping.CLASS_ORDERS[published["transformer_class_head/_conv/bias"][0]]
    ours = [order.index(c) for c in range(len(order))] + [len(order)]
    np.testing.assert_array_equal(
        variables["prediction_head/_transformer_class_head/_conv/bias"],
        tensors["transformer_class_head/_conv/bias"][ours],
    )
    np.testing.assert_array_equal(
        variables["prediction_head/_pixel_space_projection/_conv/kernel"],
        tensors["pixel_space_head/final_conv/kernel"],
    )


@pytest.mark.slow
def test_full_deeplab2_checkpoint_leaves_nothing_missing(tmp_path):
    model = _model("coco:resnet50")
    tensors = deeplab2_files.random_tensors(_table()["coco:resnet50"])
    deeplab2_files.write_checkpoint(str(tmp_path / "ckpt-150000"), tensors)
    report = pretrained.load_complete(model, str(tmp_path), "the COCO ResNet-50 model")
    assert len(report.restored) == len(_model_shapes(model))
    assert report.missing == report.mismatched == ()


def test_cityscapes_class_order_puts_our_ids_back():
    # DeepLab2 Cityscapes logits: things (train ids 11..18) first, then stuff, void last.
    order = deeplab2_mapping.CLASS_ORDERS[20]
    assert order[:8] == tuple(range(11, 19)) and order[8:] == tuple(range(11))
    rules = deeplab2_mapping.rules(20)
    (rule,) = [r for r in rules if r.pattern.startswith("prediction_head/_transformer_class")]
    deeplab2_bias = np.array([*order, 99.0])  # each channel holds the class id it stands for
    np.testing.assert_array_equal(rule.transform((20,))(deeplab2_bias), [*range(19), 99.0])
    # COCO keeps DeepLab2's order (things come first in our ids too).
    assert deeplab2_mapping.CLASS_ORDERS[134] == tuple(range(133))
