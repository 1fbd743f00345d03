"""Tests for deeplab_video.export.tflite_runner: whole videos through the TFLite export.

The float32 export of the tiny online model (conftest.py) must give, frame after frame,
the panoptic maps and track ids of the SavedModel runner on a SavedModel export of the
same checkpoint, in a process that imports the interpreter and numpy but neither
TensorFlow nor deeplab_video.
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.export import export_lib, saved_model_runner, tflite_runner
from tests.export import tflite_fixtures

RUNNER_FILE = pathlib.Path(tflite_runner.__file__)
NUM_FRAMES = 8
OTHER_SIZE = (40, 70)

# Runs in a fresh interpreter: numpy and tflite_runner.py loaded from its file.
_FRESH_PROCESS_SCRIPT = """
import importlib.util
import sys

import numpy as np

model_path, runner_file, inputs_file, outputs_file = sys.argv[1:]
spec = importlib.util.spec_from_file_location("tflite_runner", runner_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
runner = module.TFLiteVideoRunner(model_path)
video = np.load(inputs_file)["video"]
predictions = list(runner.stream(iter(video)))
np.savez(
    outputs_file,
    panoptic=np.stack([p.panoptic for p in predictions]),
    indices=np.array([p.frame_index for p in predictions]),
    matching_space=np.array(runner.matching_space_sizes),
    interpreter=np.array(type(runner._interpreter).__module__),
    modules=np.array(
        [n for n in sys.modules if n.split(".")[0] in ("tensorflow", "deeplab_video")], dtype=str
    ),
)
"""


@pytest.fixture(scope="module")
def saved_model_dir(exported_tflite, tmp_path_factory):
    """A SavedModel export of the same checkpoint and options."""
    export_dir = tmp_path_factory.mktemp("saved_model") / "export"
    export_lib.export_saved_model(
        exported_tflite.options, str(export_dir), exported_tflite.model_dir
    )
    return export_dir


@pytest.fixture(scope="module")
def runner(exported_tflite):
    return tflite_runner.TFLiteVideoRunner(str(exported_tflite.model_path))


@pytest.fixture(scope="module")
def video():
    return tflite_fixtures.video(NUM_FRAMES, seed=3)


def test_track_ids_over_the_video_equal_the_saved_model_runners(saved_model_dir, runner, video):
    reference = saved_model_runner.SavedModelVideoRunner(str(saved_model_dir))
    expected = reference.run_sequence(video)
    actual = runner.run_sequence(video)
    np.testing.assert_array_equal(actual, expected)
    assert runner.matching_space_sizes == reference.matching_space_sizes
    # Objects keep their ids from frame to frame (and there are some).
    divisor = tflite_fixtures.DESCRIPTOR.label_divisor
    things = np.isin(expected // divisor, tflite_fixtures.DESCRIPTOR.thing_ids)
    ids = [set(np.unique(expected[t][things[t]])) for t in range(NUM_FRAMES)]
    assert all(ids[t] & ids[t + 1] for t in range(NUM_FRAMES - 1))
    assert max(runner.matching_space_sizes) > 0


def test_runs_without_tensorflow_and_deeplab_video(exported_tflite, runner, video, tmp_path):
    np.savez(tmp_path / "inputs.npz", video=video)
    (tmp_path / "script.py").write_text(_FRESH_PROCESS_SCRIPT, encoding="utf-8")
    completed = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "script.py"),
            str(exported_tflite.model_path),
            str(RUNNER_FILE),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npz")
    np.testing.assert_array_equal(outputs["panoptic"], runner.run_sequence(video))
    np.testing.assert_array_equal(outputs["indices"], np.arange(NUM_FRAMES))
    assert outputs["matching_space"].tolist() == runner.matching_space_sizes
    assert str(outputs["interpreter"]).startswith("ai_edge_litert")
    assert outputs["modules"].size == 0


def test_frames_of_another_size_are_resized_there_and_back(runner, video):
    frames = np.stack([tflite_runner.resize_bilinear(f, OTHER_SIZE) for f in video])
    actual = runner.run_sequence(frames)
    assert actual.shape == (NUM_FRAMES, *OTHER_SIZE)
    at_model_size = runner.run_sequence(
        np.stack([tflite_runner.resize_bilinear(f, runner.frame_size) for f in frames])
    )
    expected = [tflite_runner.resize_nearest(p, OTHER_SIZE) for p in at_model_size]
    np.testing.assert_array_equal(actual, np.stack(expected))


def test_resizes_sample_as_tensorflow_with_aligned_corners(video):
    frame = video[0]
    labels = np.arange(frame.shape[0] * frame.shape[1], dtype=np.int32).reshape(frame.shape[:2])
    for size in (OTHER_SIZE, (97, 31)):
        expected = tf.raw_ops.ResizeBilinear(images=frame[None], size=size, align_corners=True)
        difference = tflite_runner.resize_bilinear(frame, size) - expected[0].numpy()
        assert np.abs(difference).max() <= 0.501  # rounded to uint8
        expected = tf.raw_ops.ResizeNearestNeighbor(
            images=labels[None, ..., None], size=size, align_corners=True
        )
        np.testing.assert_array_equal(
            tflite_runner.resize_nearest(labels, size), expected[0, ..., 0]
        )


def test_attributes(runner):
    assert runner.frame_size == tflite_fixtures.SIZE
    assert (runner.clip_length, runner.clip_stride) == (1, 1)


@pytest.mark.parametrize(
    "frame, error, message",
    [
        (np.zeros([48, 64, 3], np.float32), TypeError, "uint8"),
        (np.zeros([48, 64], np.uint8), ValueError, r"uint8 \[height, width, 3\]"),
        (np.zeros([48, 0, 3], np.uint8), ValueError, r"uint8 \[height, width, 3\]"),
    ],
)
def test_rejects_bad_frames(runner, frame, error, message):
    with pytest.raises(error, match=message):
        runner.run_sequence(frame[np.newaxis])


def _convert(function: tf.types.experimental.PolymorphicFunction, select_tf_ops: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if select_tf_ops else []
    )
    return converter.convert()


def test_rejects_a_model_without_the_video_kmax_signatures(tmp_path):
    doubled = tf.function(lambda x: 2.0 * x, input_signature=[tf.TensorSpec([3], tf.float32)])
    path = tmp_path / "other.tflite"
    path.write_bytes(_convert(doubled, select_tf_ops=False))
    with pytest.raises(ValueError, match="not a Video-kMaX TFLite export"):
        tflite_runner.TFLiteVideoRunner(str(path))


def test_names_the_tensorflow_ops_a_model_needs_and_refuses_it():
    counts = tf.function(
        lambda x: tf.math.bincount(x, minlength=4, maxlength=4),
        input_signature=[tf.TensorSpec([5], tf.int32)],
    )
    content = _convert(counts, select_tf_ops=True)
    assert tflite_runner.non_builtin_ops(content) == ["DenseBincount"]
    with pytest.raises(ValueError, match=r"Flex delegate \(DenseBincount\)"):
        tflite_runner.make_interpreter(content)
