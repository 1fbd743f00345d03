"""Tests for deeplab_video.export.tflite_export and the TFLite side of deeplab-video-export.

The tiny online model (tests/export/tflite_fixtures.py) is exported once per session at
48 x 64 (conftest.py). Its float32 segment_clip must give the Keras path's panoptic map
and objects, and its signatures the SavedModel's names, dtypes and shapes; quantized
exports must stay within a PQ bound of the float32 one on the synthetic val split.
"""

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import app
from ai_edge_litert import interpreter as litert

from deeplab_video import config
from deeplab_video.data import synthetic
from deeplab_video.export import (
    export_model,
    serving_module,
    tflite_export,
    tflite_runner,
)
from deeplab_video.post_processing import op_set, tracking, video_tracker
from tests import conftest
from tests.export import tflite_fixtures

SIZE = tflite_fixtures.SIZE
# Quantized PQ bounds (PQ of the quantized model's predictions with the float32 ones as
# ground truth, synthetic val split). Measured with the test weights: float16 0.994,
# dynamic_int8 0.615 (the untrained network's sharpened mask logits have small margins;
# the trained tiny model gives 0.999 and 0.990, see the README).
MIN_QUANTIZED_PQ = {"float16": 0.95, "dynamic_int8": 0.5}


@pytest.fixture(scope="module")
def interpreter(exported_tflite):
    return litert.Interpreter(model_path=str(exported_tflite.model_path))


@pytest.fixture(scope="module")
def serving(exported_tflite):
    """The SavedModel's serving module of the same model (any frame size)."""
    return serving_module.VideoServingModule(exported_tflite.model, exported_tflite.options)


def test_segment_clip_equals_the_keras_model_and_post_processing(exported_tflite, interpreter):
    segment = interpreter.get_signature_runner("segment_clip")
    segmenter = video_tracker.ClipSegmenter(exported_tflite.model, exported_tflite.options)
    for frame in tflite_fixtures.video(4, seed=2):
        outputs = segment(frames=frame[np.newaxis, np.newaxis])
        expected = segmenter.segment(tf.constant(frame[np.newaxis]))
        assert int(expected.num_objects) >= 3  # the test weights give things to track
        assert len(np.unique(expected.panoptic)) >= 6
        for field in ("panoptic", "num_objects", "query_indices", "local_ids", "classes"):
            np.testing.assert_array_equal(
                outputs[field][0], expected._asdict()[field], err_msg=field
            )
        for field in ("scores", "boxes", "embeddings"):
            np.testing.assert_allclose(
                outputs[field][0], expected._asdict()[field], rtol=1e-4, atol=1e-5, err_msg=field
            )


def _saved_model_specs(function) -> dict[str, dict[str, tf.TensorSpec]]:
    """{'inputs': {name: spec}, 'outputs': {name: spec}} of a SavedModel signature."""
    inputs = tf.nest.flatten(function.structured_input_signature)
    return {
        "inputs": {spec.name: spec for spec in inputs},
        "outputs": function.structured_outputs,
    }


def test_signatures_have_the_saved_model_names_dtypes_and_shapes(interpreter, serving):
    saved = serving.signatures()
    assert set(interpreter.get_signature_list()) == set(saved)
    for name, function in saved.items():
        runner = interpreter.get_signature_runner(name)
        details = {"inputs": runner.get_input_details(), "outputs": runner.get_output_details()}
        for side, specs in _saved_model_specs(function).items():
            assert set(details[side]) == set(specs), (name, side)
            for tensor, spec in specs.items():
                detail = details[side][tensor]
                assert detail["dtype"] == spec.dtype.as_numpy_dtype, (name, tensor)
                # The SavedModel leaves the frame size open (and initial_state gives a
                # [0, 0] previous frame); TFLite fixes every side.
                fixed = detail["shape"].tolist()
                if tensor == "previous_frame":
                    assert fixed == list(SIZE), name
                    continue
                pairs = zip(spec.shape.as_list(), fixed, strict=True)
                assert all(s in (None, f) for s, f in pairs), (name, tensor, fixed)
    frames = interpreter.get_signature_runner("segment_clip").get_input_details()["frames"]
    assert frames["shape"].tolist() == [1, 1, *SIZE, 3]


def test_initial_state_is_the_tracking_initial_state_at_the_frame_size(
    exported_tflite, interpreter
):
    opts = exported_tflite.options
    state = interpreter.get_signature_runner("initial_state")()
    k = opts.evaluator_options.post_processing.max_objects_per_clip
    m = opts.evaluator_options.memory_buffer.max_tracks
    d = state["memory_embeddings"].shape[1]
    reference = serving_module.flatten_state(tracking.initial_state(k, m, d))
    reference["previous_frame"] = np.zeros(SIZE, np.int32)
    assert set(state) == set(serving_module.STATE_NAMES)
    for name, value in reference.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_the_model_has_builtin_ops_only(exported_tflite):
    assert tflite_export.non_builtin_ops(exported_tflite.model_path.read_bytes()) == []


def test_segment_clip_is_the_primary_subgraph(exported_tflite):
    """LiteRT delegates subgraph 0 to XNNPACK; the converter would put initial_state there."""
    model = tflite_runner.flatbuffer_schema().Model.GetRootAs(
        exported_tflite.model_path.read_bytes(), 0
    )
    subgraphs = {
        model.SignatureDefs(i).SignatureKey().decode(): model.SignatureDefs(i).SubgraphIndex()
        for i in range(model.SignatureDefsLength())
    }
    assert subgraphs[serving_module.SEGMENT_CLIP] == 0
    assert sorted(subgraphs.values()) == [0, 1, 2]


class _ControlFlow(tf.Module):
    """Three signatures, two with control flow (IF, WHILE) in their own subgraphs."""

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def branch(self, x):
        return {"y": tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def loop(self, n):
        return {"total": tf.while_loop(lambda i, t: i < n, lambda i, t: (i + 1, t + i), (0, 0))[1]}

    @tf.function(input_signature=[])
    def constant(self):
        return {"c": tf.constant([1.0, 2.0])}


@pytest.mark.parametrize("first", ["branch", "loop", "constant"])
def test_primary_subgraph_first_renumbers_signatures_and_control_flow(tmp_path, first):
    module = _ControlFlow()
    signatures = {name: getattr(module, name) for name in ("branch", "loop", "constant")}
    tf.saved_model.save(module, str(tmp_path), signatures=signatures)
    content = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), list(signatures)).convert()
    moved = tflite_export.primary_subgraph_first(content, first)
    runs = {
        "branch": [{"x": np.array([1.0, 2.0, 3.0], np.float32)}, {"x": -np.ones(3, np.float32)}],
        "loop": [{"n": np.array(5, np.int32)}],
        "constant": [{}],
    }
    before, after = (tflite_runner.make_interpreter(c) for c in (content, moved))
    assert after.get_signature_runner(first)._subgraph_index == 0
    for name, inputs in runs.items():
        for kwargs in inputs:
            expected = before.get_signature_runner(name)(**kwargs)
            actual = after.get_signature_runner(name)(**kwargs)
            tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)


@pytest.mark.parametrize(
    "config_file, frame_size, quantization, message",
    [
        (tflite_fixtures.ONLINE, SIZE, "int4", "quantization must be one of"),
        (tflite_fixtures.ONLINE, (0, 64), "none", "two positive integers"),
        (tflite_fixtures.ONLINE, (48,), "none", "two positive integers"),
        (tflite_fixtures.ONLINE, (48.5, 64), "none", "two positive integers"),
        (tflite_fixtures.ONLINE, "48,64", "none", "two positive integers"),
        (tflite_fixtures.ONLINE, (4096, 4096), "none", "exactly below 16777216"),
        (tflite_fixtures.NEAR_ONLINE, SIZE, "none", "online model .* has clip_length 2"),
    ],
)
def test_rejects_what_it_cannot_export_before_building(
    tmp_path, config_file, frame_size, quantization, message
):
    opts = config.load_config(config_file)
    with pytest.raises(ValueError, match=message):
        tflite_export.export_tflite(
            opts, str(tmp_path / "m.tflite"), frame_size, None, quantization
        )
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_without_the_stand_ins_the_export_names_the_ops_that_are_not_builtin(
    exported_tflite, tmp_path, monkeypatch
):
    """What op_set's builtin variants replace: these ops fail the builtin-only conversion,
    or fall back to TensorFlow ops (which the LiteRT runner refuses) with select_tf_ops=True."""
    monkeypatch.setattr(op_set, "tflite_builtin_ops", contextlib.nullcontext)
    opts, model_dir = exported_tflite.options, exported_tflite.model_dir
    with pytest.raises(ValueError, match="no TFLite builtin counterpart: .*DenseBincount"):
        tflite_export.export_tflite(opts, str(tmp_path / "a.tflite"), SIZE, model_dir)
    path = tflite_export.export_tflite(
        opts, str(tmp_path / "b.tflite"), SIZE, model_dir, select_tf_ops=True
    )
    with open(path, "rb") as f:
        fallback = tflite_export.non_builtin_ops(f.read())
    assert {"BitwiseAnd", "DenseBincount", "RightShift", "UniqueWithCounts"} <= set(fallback)
    with pytest.raises(ValueError, match="Flex delegate .*DenseBincount"):
        tflite_runner.TFLiteVideoRunner(path)


@pytest.mark.slow
def test_quantized_predictions_stay_within_the_pq_bound_on_the_val_split(exported_tflite, tmp_path):
    split = synthetic.generate_split(synthetic.SyntheticConfig(), "val")
    size = split[0].images.shape[1:3]
    predictions = {}
    for quantization in tflite_export.QUANTIZATIONS:
        path = tflite_export.export_tflite(
            exported_tflite.options,
            str(tmp_path / f"{quantization}.tflite"),
            size,
            exported_tflite.model_dir,
            quantization,
        )
        runner = tflite_runner.TFLiteVideoRunner(path)
        predictions[quantization] = [f for s in split for f in runner.run_sequence(s.images)]
    sizes = {q: (tmp_path / f"{q}.tflite").stat().st_size for q in predictions}
    assert sizes["dynamic_int8"] < sizes["float16"] < sizes["none"]
    for quantization, bound in MIN_QUANTIZED_PQ.items():
        quality = tflite_fixtures.panoptic_quality(predictions["none"], predictions[quantization])
        assert quality >= bound, (quantization, quality)


# The command line.


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format=tflite"], "--format tflite needs --frame_size HEIGHT,WIDTH"),
        (["--format=tflite", "--frame_size=48x64"], "two positive integers HEIGHT,WIDTH"),
        (["--format=tflite", "--frame_size=48,0"], "two positive integers HEIGHT,WIDTH"),
        (["--frame_size=48,64"], "apply to --format tflite only"),
        (["--quantization=float16"], "apply to --format tflite only"),
    ],
)
def test_cli_usage_errors(cli_flags, tmp_path, args, message):
    cli_flags(
        export_model,
        f"--config_file={tflite_fixtures.ONLINE}",
        f"--output_dir={tmp_path}",
        *args,
    )
    with pytest.raises(app.UsageError, match=message):
        export_model.main(["deeplab-video-export"])


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deeplab_video.export.export_model", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=conftest.REPO_ROOT,
    )


def test_cli_help_lists_the_tflite_flags():
    completed = _run_cli("--help")
    for flag in ("--format", "--frame_size", "--quantization", "none|float16|dynamic_int8"):
        assert flag in completed.stdout


def test_cli_errors_are_one_line(tmp_path):
    completed = _run_cli(
        f"--config_file={tflite_fixtures.NEAR_ONLINE}",
        f"--output_dir={tmp_path}",
        "--format=tflite",
        "--frame_size=48,64",
    )
    assert completed.returncode == 1
    assert "has clip_length 2" in conftest.the_error_line(completed.stderr)
    completed = _run_cli(
        f"--config_file={tflite_fixtures.ONLINE}",
        f"--output_dir={tmp_path}",
        "--format=tflite",
        "--frame_size=48,64",
        "--quantization=int4",
    )
    assert completed.returncode == 1
    assert "--quantization" in conftest.the_error_line(completed.stderr)


@pytest.mark.slow
def test_cli_exports_a_tflite_model_and_its_config(exported_tflite, tmp_path):
    completed = _run_cli(
        f"--config_file={tflite_fixtures.ONLINE}",
        f"--checkpoint={exported_tflite.model_dir}",
        f"--output_dir={tmp_path}",
        "--format=tflite",
        "--frame_size=33,45",
        "--quantization=float16",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert config.load_config(tmp_path / export_model.TFLITE_CONFIG_COPY) == config.load_config(
        tflite_fixtures.ONLINE
    )
    runner = tflite_runner.TFLiteVideoRunner(str(tmp_path / export_model.TFLITE_FILE))
    assert runner.frame_size == (33, 45)
