"""Tests of the official PyTorch Video-kMaX mapping and of loading official files.

The key tables in official_tables/ list the state dicts of the official network (built
from its own code by scripts/official_reference.py --keys_only).
"""

import pathlib

import numpy as np
import pytest

from deeplab_video import config
from deeplab_video.model import official_mapping, pretrained, tf_checkpoint, torch_checkpoint
from deeplab_video.model.builder import build_model
from tests.conftest import CONFIG_DIR
from tests.model import torch_files

TABLES = pathlib.Path(__file__).parent / "official_tables"
_DTYPES = {"float32": np.float32, "int64": np.int64}


def read_table(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """{official name: (shape, dtype)} of a committed key table."""
    table = {}
    for line in (TABLES / f"{name}.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        table[key] = (tuple(int(s) for s in shape.split(",") if s), dtype)
    return table


def model_shapes(model) -> dict[str, tuple[int, ...]]:
    variables = tf_checkpoint.variable_keys(model.checkpoint_items)
    return {key: tuple(v.shape.as_list()) for key, v in variables.items()}


def _assign(model: dict, source: dict) -> dict:
    shapes = {name: tuple(np.shape(value)) for name, value in source.items()}
    return official_mapping.assign(model, shapes)


def _converted(model: dict, source: dict) -> dict[str, np.ndarray]:
    return {
        key: a.transform(np.asarray(source[a.source_key]))
        for key, a in _assign(model, source).items()
    }


def test_layout_changes():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(8, 3, 7, 7))
    conv1d = rng.normal(size=(6, 4, 1))
    depthwise = rng.normal(size=(4, 1, 5, 5))
    qkv = rng.normal(size=(24, 16, 1))
    centres = rng.normal(size=(4, 5))
    similarity = rng.normal(size=24)
    retrieved = rng.normal(size=32)
    layer = "sem_seg_head.predictor._kmax_transformer_layers.0."
    axis = "sem_seg_head.pixel_decoder._stages.0._blocks.0._attention._height_axis."
    source = {
        "backbone.stem.conv1.weight": conv,
        layer + "_query_conv1_bn_act.conv.weight": conv1d,
        layer + "_predcitor._pixel_space_head_conv0bnact.conv.weight": depthwise,
        axis + "qkv_transform.conv.weight": qkv,
        axis + "_batch_norm_similarity.running_var": similarity,
        axis + "_batch_norm_retrieved_output.weight": retrieved,
        "sem_seg_head.predictor._cluster_centers.weight": centres,
    }
    ours_layer = "transformer_decoder/_stage_layers/0/0/"
    ours_axis = "pixel_decoder/_stages/0/_block1/_attention/_height_axis/"
    shapes = {
        "backbone/_stem/_conv/kernel": (7, 7, 3, 8),
        ours_layer + "_query_conv1_bn_act/_conv/kernel": (1, 1, 4, 6),
        ours_layer + "_prediction_head/_pixel_space_head/_depthwise_conv/depthwise_kernel": (
            5,
            5,
            4,
            1,
        ),
        ours_axis + "qkv_kernel": (16, 24),
        ours_axis + "_batch_norm_similarity/moving_variance": (3, 1, 8, 1, 1),
        ours_axis + "_batch_norm_retrieved_output/gamma": (2, 1, 8, 1, 2),
        "transformer_decoder/cluster_centers": (5, 4),
    }
    converted = _converted(shapes, source)
    assert set(converted) == set(shapes)
    np.testing.assert_array_equal(
        converted["backbone/_stem/_conv/kernel"][2, 4, 1, 5], conv[5, 1, 2, 4]
    )
    np.testing.assert_array_equal(
        converted[ours_layer + "_query_conv1_bn_act/_conv/kernel"][0, 0], conv1d[:, :, 0].T
    )
    np.testing.assert_array_equal(
        converted[
            ours_layer + "_prediction_head/_pixel_space_head/_depthwise_conv/depthwise_kernel"
        ][1, 3, 2, 0],
        depthwise[2, 0, 1, 3],
    )
    np.testing.assert_array_equal(converted[ours_axis + "qkv_kernel"], qkv[:, :, 0].T)
    # Similarity terms [content, query rpe, key rpe] x heads; retrieved [content, rpe] x C.
    np.testing.assert_array_equal(
        converted[ours_axis + "_batch_norm_similarity/moving_variance"][1, 0, 3, 0, 0],
        similarity[1 * 8 + 3],
    )
    np.testing.assert_array_equal(
        converted[ours_axis + "_batch_norm_retrieved_output/gamma"][1, 0, 5, 0, 1],
        retrieved[16 + 5 * 2 + 1],
    )
    np.testing.assert_array_equal(converted["transformer_decoder/cluster_centers"], centres.T)
    for key, value in converted.items():
        assert value.shape == shapes[key], key


def test_decoder_layers_follow_our_stage_order_and_both_predictor_spellings():
    head = "_transformer_class_head.conv.bias"
    source = {
        f"sem_seg_head.predictor._kmax_transformer_layers.{k}._predcitor.{head}": np.full(3, k)
        for k in range(3)
    }
    source[f"sem_seg_head.predictor._predictor.{head}"] = np.full(3, 9)
    layers = ["0/0", "1/0", "1/1"]
    shapes = {
        f"transformer_decoder/_stage_layers/{layer}/_prediction_head/_transformer_class_head/"
        "_conv/bias": (3,)
        for layer in layers
    }
    shapes["prediction_head/_transformer_class_head/_conv/bias"] = (3,)
    converted = _converted(shapes, source)
    for k, layer in enumerate(layers):
        key = (
            f"transformer_decoder/_stage_layers/{layer}/_prediction_head/_transformer_class_head/"
            "_conv/bias"
        )
        assert converted[key][0] == k
    assert converted["prediction_head/_transformer_class_head/_conv/bias"][0] == 9


def test_convnext_keys():
    source = {
        "backbone.downsample_layers.0.0.weight": np.zeros((8, 3, 4, 4)),
        "backbone.downsample_layers.0.1.weight": np.ones(8),
        "backbone.downsample_layers.1.0.bias": np.full(8, 2.0),
        "backbone.downsample_layers.1.1.bias": np.full(16, 3.0),
        "backbone.stages.2.5.gamma": np.full(16, 4.0),
        "backbone.stages.2.5.dwconv.weight": np.zeros((16, 1, 7, 7)),
        "backbone.stages.2.5.pwconv1.weight": np.zeros((64, 16)),
        "sem_seg_head.predictor._cluster_centers.weight": np.zeros((4, 2)),
    }
    block = "backbone/stages/2/layer_with_weights-5/"
    shapes = {
        "backbone/downsample_layers/0/layer_with_weights-0/kernel": (4, 4, 3, 8),
        "backbone/downsample_layers/0/layer_with_weights-1/gamma": (8,),
        "backbone/downsample_layers/1/layer_with_weights-0/beta": (8,),
        "backbone/downsample_layers/1/layer_with_weights-1/bias": (16,),
        block + "layer_scale": (1, 1, 1, 16),
        block + "depthwise_conv/kernel": (7, 7, 1, 16),
        block + "pointwise_conv1/kernel": (16, 64),
    }
    converted = _converted(shapes, source)
    assert set(converted) == set(shapes)
    for key, value in converted.items():
        assert value.shape == shapes[key], key
    assert converted[block + "layer_scale"][0, 0, 0, 3] == 4.0


def test_recognises_only_official_state_dicts():
    assert official_mapping.recognises({"backbone.stem.conv1.weight": (1,), "sem_seg_head.x": (1,)})
    assert not official_mapping.recognises({"backbone/_stem/_conv/kernel": (1,)})
    assert not official_mapping.recognises({"backbone.stem.conv1.weight": (1,)})


def test_unused_reasons():
    reason = official_mapping.unused_reason
    assert reason("backbone.res2.0.conv1.norm.num_batches_tracked") == (
        official_mapping.UNUSED_COUNTER
    )
    aux = "sem_seg_head.predictor._auxiliary_semantic_predictor._aspp._aspp_conv0.conv.weight"
    assert reason(aux) == official_mapping.UNUSED_AUXILIARY
    assert reason("sem_seg_head.something_else.weight") == official_mapping.UNUSED_NO_COUNTERPART


def _tiny_official_checkpoint(model) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A few official tensors for the tiny model (our values in official layouts)."""
    shapes = model_shapes(model)
    rng = np.random.default_rng(3)
    stem = rng.normal(size=shapes["backbone/_stem/_conv/kernel"]).astype(np.float32)
    centres = rng.normal(size=shapes["transformer_decoder/cluster_centers"]).astype(np.float32)
    layer = "transformer_decoder/_stage_layers/2/0/_query_conv1_bn_act/_conv/kernel"
    query = rng.normal(size=shapes[layer]).astype(np.float32)
    state = {
        "backbone.stem.conv1.weight": stem.transpose(3, 2, 0, 1),
        "backbone.stem.conv1.norm.running_var": np.full(stem.shape[-1], 2.0, np.float32),
        "backbone.stem.conv1.norm.num_batches_tracked": np.array(5, np.int64),
        "sem_seg_head.predictor._cluster_centers.weight": centres.T.copy(),
        "sem_seg_head.predictor._kmax_transformer_layers.2._query_conv1_bn_act.conv.weight": (
            query[0, 0].T[..., None].copy()
        ),
        "sem_seg_head.predictor._auxiliary_semantic_predictor.final_conv.conv.bias": np.zeros(
            7, np.float32
        ),
    }
    expected = {
        "backbone/_stem/_conv/kernel": stem,
        "backbone/_stem/_batch_norm/moving_variance": state["backbone.stem.conv1.norm.running_var"],
        "transformer_decoder/cluster_centers": centres,
        layer: query,
    }
    return state, expected


@pytest.fixture(scope="module")
def tiny_model():
    opts = config.load_config(CONFIG_DIR / "synthetic" / "tiny_online.textproto")
    return build_model(opts, inference_only=True)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_load_pretrained_reads_official_files(tmp_path, tiny_model, suffix):
    state, expected = _tiny_official_checkpoint(tiny_model)
    path = tmp_path / f"model_final{suffix}"
    if suffix == ".pth":
        torch_files.write_pth(path, {"model": torch_files.tensors_of(state), "iteration": 3})
    else:
        torch_files.write_pkl(path, state)
    report = pretrained.load_pretrained(tiny_model, str(path))
    assert report.source_format == "official_pytorch"
    assert set(report.restored) == set(expected)
    assert not report.mismatched
    variables = tf_checkpoint.variable_keys(tiny_model.checkpoint_items)
    for key, value in expected.items():
        np.testing.assert_array_equal(variables[key].numpy(), value)
    assert report.unused_reasons == {
        "backbone.stem.conv1.norm.num_batches_tracked": official_mapping.UNUSED_COUNTER,
        "sem_seg_head.predictor._auxiliary_semantic_predictor.final_conv.conv.bias": (
            official_mapping.UNUSED_AUXILIARY
        ),
    }
    assert set(report.unused) == set(report.unused_reasons)
    assert len(report.missing) == len(variables) - len(expected)


def test_load_pretrained_refuses_a_malicious_file(tmp_path, tiny_model):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pth"
    torch_files.write_malicious_pth(path, f"touch {marker}")
    with pytest.raises(torch_checkpoint.UnsafePickleError, match="system"):
        pretrained.load_pretrained(tiny_model, str(path))
    assert not marker.exists()


def _model_shapes_of(config_name: str) -> dict[str, tuple[int, ...]]:
    opts = config.load_config(CONFIG_DIR / config_name)
    return model_shapes(build_model(opts, inference_only=True))


def _check_covers(table_name: str, config_name: str, unused_reasons: set[str]) -> None:
    table = read_table(table_name)
    shapes = _model_shapes_of(config_name)
    assignments = official_mapping.assign(shapes, {k: s for k, (s, _) in table.items()})
    assert sorted(set(shapes) - set(assignments)) == []
    used = {a.source_key for a in assignments.values()}
    assert len(used) == len(assignments)
    assert {official_mapping.unused_reason(k) for k in set(table) - used} == unused_reasons
    for key, assignment in assignments.items():
        shape, dtype = table[assignment.source_key]
        value = assignment.transform(np.broadcast_to(_DTYPES[dtype](0), shape))
        assert value.shape == shapes[key], (key, assignment.source_key)


def test_vipseg_resnet50_variables_are_the_official_keys():
    _check_covers(
        "vipseg_resnet50", "vipseg/resnet50_online.textproto", {official_mapping.UNUSED_COUNTER}
    )


@pytest.mark.slow
def test_vipseg_convnext_large_variables_are_the_official_keys():
    _check_covers(
        "vipseg_convnext_large",
        "vipseg/convnext_l_online.textproto",
        {official_mapping.UNUSED_COUNTER},
    )


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_full_official_file_fills_the_vipseg_model(tmp_path, suffix):
    table = read_table("vipseg_resnet50")
    rng = np.random.default_rng(7)
    state = {
        name: rng.normal(size=shape).astype(_DTYPES[dtype])
        for name, (shape, dtype) in table.items()
    }
    path = tmp_path / f"model_final{suffix}"
    if suffix == ".pth":
        torch_files.write_pth(path, {"model": torch_files.tensors_of(state), "iteration": 1})
    else:
        torch_files.write_pkl(path, state)
    opts = config.load_config(CONFIG_DIR / "vipseg" / "resnet50_online.textproto")
    model = build_model(opts, inference_only=True)
    report = pretrained.load_pretrained(model, str(path))
    assert report.missing == () and report.mismatched == ()
    assert set(report.unused_reasons.values()) == {official_mapping.UNUSED_COUNTER}
    variables = tf_checkpoint.variable_keys(model.checkpoint_items)
    np.testing.assert_array_equal(
        variables["backbone/_stage3/_block2/_conv2_bn_act/_conv/kernel"].numpy(),
        state["backbone.res3.1.conv2.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        variables["transformer_decoder/cluster_centers"].numpy(),
        state["sem_seg_head.predictor._cluster_centers.weight"].T,
    )


@pytest.mark.slow
def test_coco_video_resnet50_variables_are_the_official_keys():
    _check_covers(
        "coco_video_resnet50",
        "coco_video/resnet50_online.textproto",
        {official_mapping.UNUSED_COUNTER, official_mapping.UNUSED_AUXILIARY},
    )
