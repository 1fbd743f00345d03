"""Tests for deeplab_video.export: the SavedModel's signatures against the Python path.

The tiny synthetic model is exported once per module from a checkpoint of a separately built
model (so the parity checks also prove the restore), with its class head biased towards
thing classes and class and overlap thresholds of 0, so that the untrained network yields
objects to track, and with the VIPSeg configs' tracking choices (official output frames,
memory insertion and 'mask_embeddings'), which the defaults are not. A fresh Python process
that imports only TensorFlow and numpy loads the export and writes its outputs; they must
equal ClipSegmenter.segment and VideoRunner.run_sequence on the Keras model.
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from absl import app
from google.protobuf import text_format

from deeplab_video import config
from deeplab_video.data import synthetic
from deeplab_video.export import export_lib, export_model, saved_model_runner, serving_module
from deeplab_video.model import builder, pretrained
from deeplab_video.post_processing import tracking, video_tracker
from deeplab_video.protos import config_pb2
from tests import conftest
from tests.export import tflite_fixtures

CONFIG = conftest.CONFIG_DIR / "synthetic" / "tiny_near_online.textproto"
RUNNER_FILE = pathlib.Path(saved_model_runner.__file__)
SIZE = (97, 129)  # a network size (32k + 1): no padding
ODD_SIZE = (40, 70)  # padded to 65 x 97, then cropped back
NUM_FRAMES = 5

# Runs in a fresh interpreter: TensorFlow, numpy, and saved_model_runner.py loaded from its
# file (outside the deeplab_video package).
_FRESH_PROCESS_SCRIPT = """
import importlib.util
import sys

import numpy as np
import tensorflow as tf

export_dir, runner_file, inputs_file, outputs_file = sys.argv[1:]
inputs = np.load(inputs_file)
loaded = tf.saved_model.load(export_dir)
segment, initial_state, track = (
    loaded.signatures[name] for name in ("segment_clip", "initial_state", "track")
)
results = {}
for name in ("clip", "odd_clip"):
    for key, value in segment(frames=tf.constant(inputs[name])).items():
        results[name + "/" + key] = value.numpy()

# Near-online, T = 2: clips start every frame and share one frame with the previous clip
# (the last one completed with the last frame); each clip's output_frames are its results.
video = inputs["video"]
state = initial_state()
maps, reported = [], []
for start in range(len(video)):
    clip = np.concatenate([video[start : start + 2], video[-1:]])[:2]
    outputs = track(**state, **segment(frames=tf.constant(clip[None])))
    state = {name: outputs[name] for name in state}
    reported.append(outputs["output_frames"][0].numpy())
    maps.append(outputs["panoptic"][0].numpy()[reported[-1]])
results["video/signatures"] = np.concatenate(maps)[: len(video)]
results["video/output_frames"] = np.stack(reported)

spec = importlib.util.spec_from_file_location("saved_model_runner", runner_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
runner = module.SavedModelVideoRunner(export_dir)
predictions = list(runner.stream(iter(video)))
results["video/runner"] = np.stack([p.panoptic for p in predictions])
results["video/indices"] = np.array([p.frame_index for p in predictions])
results["video/matching_space"] = np.array(runner.matching_space_sizes)
results["runner/clip_length_and_stride"] = np.array([runner.clip_length, runner.clip_stride])
try:
    runner.run_sequence(video.astype(np.float32))
except TypeError as error:
    results["float_frames_error"] = np.array(str(error))
results["imported_deeplab_video"] = np.array(
    [name for name in sys.modules if name.startswith("deeplab_video")], dtype=str
)
np.savez(outputs_file, **results)
"""


def _options() -> config_pb2.ExperimentOptions:
    options = tflite_fixtures.keep_every_object(config.load_config(CONFIG))
    options.evaluator_options.stitching.output_frames = "aligned_clips"
    memory = options.evaluator_options.memory_buffer
    memory.new_object_insertion = "when_no_candidates"
    memory.embedding_output = "mask_embeddings"
    return options


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model (reference weights), its options and the export directory."""
    options = _options()
    tf_keras.utils.set_random_seed(0)
    model = builder.build_model(options, inference_only=True)
    tflite_fixtures.favour_things(model)
    model_dir = tmp_path_factory.mktemp("model_dir")
    tf.train.Checkpoint(**model.checkpoint_items).save(str(model_dir / "ckpt"))
    export_dir = tmp_path_factory.mktemp("export") / "saved_model"
    returned = export_lib.export_saved_model(options, str(export_dir), str(model_dir))
    assert returned == str(export_dir)
    return options, model, export_dir


@pytest.fixture(scope="module")
def fresh_process(exported, tmp_path_factory):
    """Inputs, and the outputs the export gives in a process without deeplab_video."""
    _, _, export_dir = exported
    folder = tmp_path_factory.mktemp("fresh_process")
    inputs = {
        "clip": tflite_fixtures.video(2, SIZE)[np.newaxis],
        "odd_clip": tflite_fixtures.video(2, ODD_SIZE, seed=1)[np.newaxis],
        "video": tflite_fixtures.video(NUM_FRAMES, ODD_SIZE, seed=2),
    }
    np.savez(folder / "inputs.npz", **inputs)
    (folder / "script.py").write_text(_FRESH_PROCESS_SCRIPT, encoding="utf-8")
    completed = subprocess.run(
        [
            sys.executable,
            str(folder / "script.py"),
            str(export_dir),
            str(RUNNER_FILE),
            str(folder / "inputs.npz"),
            str(folder / "outputs.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return inputs, dict(np.load(folder / "outputs.npz"))


@pytest.fixture(scope="module")
def reference(exported):
    """The Python path on the Keras model (one runner, so its functions trace once)."""
    options, model, _ = exported
    return video_tracker.VideoRunner(model, options)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[2]))


@pytest.mark.parametrize("name", ["clip", "odd_clip"])
def test_segment_clip_equals_the_keras_model_and_post_processing(reference, fresh_process, name):
    inputs, outputs = fresh_process
    expected = reference.segmenter.segment(tf.constant(inputs[name][0]))
    assert outputs[f"{name}/panoptic"].shape == inputs[name].shape[:4]
    assert int(expected.num_objects) > 0  # thresholds of 0: the untrained model finds things
    for field in ("panoptic", "num_objects", "query_indices", "local_ids", "classes"):
        np.testing.assert_array_equal(outputs[f"{name}/{field}"][0], expected._asdict()[field])
    for field in ("scores", "boxes", "embeddings"):
        np.testing.assert_allclose(
            outputs[f"{name}/{field}"][0], expected._asdict()[field], rtol=1e-5, atol=1e-6
        )


def test_tracking_through_signatures_and_runner_equals_video_runner(reference, fresh_process):
    inputs, outputs = fresh_process
    assert reference.clip_length == 2  # the script's clip schedule
    expected = reference.run_sequence(inputs["video"])
    divisor = synthetic.DESCRIPTOR.label_divisor
    things = np.isin(expected // divisor, synthetic.DESCRIPTOR.thing_ids)
    ids_per_frame = [set(np.unique(expected[t][things[t]])) for t in range(NUM_FRAMES)]
    # Objects keep their ids across clips (frames 2 and 4 come from later clips than 1, 3).
    assert all(ids_per_frame[t] & ids_per_frame[t + 1] for t in range(1, NUM_FRAMES - 1))
    np.testing.assert_array_equal(outputs["video/signatures"], expected)
    np.testing.assert_array_equal(outputs["video/runner"], expected)
    np.testing.assert_array_equal(outputs["video/indices"], np.arange(NUM_FRAMES))
    # aligned_clips: the clips starting at even frames give both their frames.
    aligned = [start % 2 == 0 for start in range(NUM_FRAMES)]
    np.testing.assert_array_equal(outputs["video/output_frames"], np.repeat([aligned], 2, 0).T)
    assert outputs["video/matching_space"].tolist() == reference.matching_space_sizes
    assert outputs["runner/clip_length_and_stride"].tolist() == [2, 1]
    assert "uint8" in str(outputs["float_frames_error"])
    assert outputs["imported_deeplab_video"].size == 0


def test_signature_names_dtypes_and_shapes(exported, loaded):
    options, _, _ = exported
    k = options.evaluator_options.post_processing.max_objects_per_clip
    m = options.evaluator_options.memory_buffer.max_tracks
    d = options.model_options.transformer_decoder.query_channels  # mask_embeddings
    signatures = loaded.signatures
    assert set(signatures) == {"segment_clip", "initial_state", "track"}

    (frames,) = signatures["segment_clip"].structured_input_signature[1].values()
    assert (frames.name, frames.dtype, frames.shape.as_list()) == (
        "frames",
        tf.uint8,
        [None, None, None, None, 3],
    )
    clip_outputs = {
        name: (spec.dtype, spec.shape.as_list())
        for name, spec in signatures["segment_clip"].structured_outputs.items()
    }
    assert clip_outputs == {
        "panoptic": (tf.int32, [1, 2, None, None]),
        "num_objects": (tf.int32, [1]),
        "query_indices": (tf.int32, [1, k]),
        "local_ids": (tf.int32, [1, k]),
        "classes": (tf.int32, [1, k]),
        "scores": (tf.float32, [1, k]),
        "boxes": (tf.float32, [1, k, 4]),
        "embeddings": (tf.float32, [1, k, d]),
    }

    state = signatures["initial_state"]()
    assert tuple(sorted(state)) == tuple(sorted(serving_module.STATE_NAMES))
    reference = serving_module.flatten_state(tracking.initial_state(k, m, d))
    for name, value in reference.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)

    track_inputs = signatures["track"].structured_input_signature[1]
    assert set(track_inputs) == set(state) | set(clip_outputs)
    assert track_inputs["previous_frame"].shape.as_list() == [None, None]
    track_outputs = signatures["track"].structured_outputs
    assert set(track_outputs) == set(state) | {
        "track_ids",
        "panoptic",
        "matching_space",
        "output_frames",
    }
    assert track_outputs["track_ids"].shape.as_list() == [1, k]
    assert track_outputs["output_frames"].dtype == tf.bool
    assert track_outputs["output_frames"].shape.as_list() == [1, 2]
    assert track_outputs["panoptic"].shape.as_list() == [1, 2, None, None]


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros([1, 2, 33, 33, 3], np.float32), "uint8"),
        (np.zeros([1, 2, 33, 33], np.uint8), r"expected shape \[1,2,\?,\?,3\]"),
        (np.zeros([1, 3, 33, 33, 3], np.uint8), r"uint8 \[1, 2, height, width, 3\].*clip_length=2"),
        (np.zeros([2, 2, 33, 33, 3], np.uint8), r"clip_length=2"),
        (np.zeros([1, 2, 0, 33, 3], np.uint8), r"height and width >= 1"),
    ],
)
def test_segment_clip_rejects_bad_frames_saying_what_it_expects(loaded, frames, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["segment_clip"](frames=tf.constant(frames))


def test_track_rejects_a_state_of_another_frame_size(loaded):
    segment, track = loaded.signatures["segment_clip"], loaded.signatures["track"]
    clip = segment(frames=tflite_fixtures.video(2, SIZE)[None])
    first = track(**loaded.signatures["initial_state"](), **clip)
    state = {name: first[name] for name in serving_module.STATE_NAMES}
    other_size = segment(frames=tflite_fixtures.video(2, ODD_SIZE)[None])
    with pytest.raises(tf.errors.InvalidArgumentError, match="frames of another size"):
        track(**state, **other_size)


def test_a_client_built_initial_state_tracks_like_initial_state(loaded):
    """REST clients cannot call a signature without inputs (nor send a [0, 0] tensor in
    JSON); the README tells them to build the state, with previous_frame [[0]]."""
    signatures = loaded.signatures
    initial = signatures["initial_state"]()
    m, d = initial["memory_embeddings"].shape
    k = initial["previous_track_ids"].shape[0]
    built = {
        "memory_embeddings": np.zeros([m, d], np.float32),
        "memory_boxes": np.zeros([m, 4], np.float32),
        "memory_previous_boxes": np.zeros([m, 4], np.float32),
        "memory_classes": np.full([m], -1, np.int32),
        "memory_ids": np.full([m], -1, np.int32),
        "memory_last_seen": np.zeros([m], np.int32),
        "memory_valid": np.zeros([m], bool),
        "memory_next_id": np.int32(1),
        "previous_frame": np.zeros([1, 1], np.int32),
        "previous_track_ids": np.full([k], -1, np.int32),
        "previous_classes": np.full([k], -1, np.int32),
        "num_clips": np.int32(0),
    }
    assert set(built) == set(initial)
    for name, value in built.items():
        if name != "previous_frame":
            np.testing.assert_array_equal(initial[name], value, err_msg=name)
    segmented = signatures["segment_clip"](frames=tflite_fixtures.video(2, SIZE)[None])
    expected = signatures["track"](**initial, **segmented)
    actual = signatures["track"](**{name: tf.constant(v) for name, v in built.items()}, **segmented)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_export_copies_the_config(exported):
    options, _, export_dir = exported
    text = (export_dir / export_lib.CONFIG_COPY).read_text(encoding="utf-8")
    assert text_format.Parse(text, config_pb2.ExperimentOptions()) == options


def test_a_fixed_size_export_calls_no_python(exported):
    # The Python runner calls native kernels through tf.numpy_function (the mask-wise
    # merge where the frame size is static, lookups); a SavedModel cannot hold those calls.
    options, model, _ = exported
    options = config_pb2.ExperimentOptions.FromString(options.SerializeToString())
    options.evaluator_options.post_processing.mask_threshold = 0.4  # The kernel's range.
    module = serving_module.VideoServingModule(model, options, frame_size=SIZE)
    for name, function in module.signatures().items():
        graph = function.graph.as_graph_def()
        ops = {node.op for node in graph.node}
        ops.update(node.op for f in graph.library.function for node in f.node_def)
        assert not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & ops, name
        assert name != "segment_clip" or "ResizeBilinear" in ops  # The merge was traced.


def test_state_flattening_round_trips():
    state = tracking.initial_state(3, 4, 5)._replace(num_clips=tf.constant(7))
    flat = serving_module.flatten_state(state)
    assert tuple(flat) == serving_module.STATE_NAMES
    restored = serving_module.unflatten_state(flat)
    tf.nest.map_structure(np.testing.assert_array_equal, restored, state)


def test_checkpoint_errors_are_specific(exported, tmp_path):
    _, model, _ = exported
    with pytest.raises(FileNotFoundError, match="No checkpoint found in directory"):
        export_lib.restore_weights(model, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ckpt-9.index"):
        export_lib.restore_weights(model, str(tmp_path / "ckpt-9"))
    backbone_only = tf.train.Checkpoint(backbone=model.checkpoint_items["backbone"])
    prefix = backbone_only.save(str(tmp_path / "partial" / "ckpt"))
    with pytest.raises(pretrained.CheckpointMismatchError, match="variables missing"):
        export_lib.restore_weights(model, prefix)


def test_cli_rejects_extra_arguments():
    with pytest.raises(app.UsageError, match="unexpected arguments: extra"):
        export_model.main(["deeplab-video-export", "extra"])


@pytest.mark.slow
def test_cli_exports_fresh_weights(tmp_path):
    output_dir = tmp_path / "export"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeplab_video.export.export_model",
            f"--config_file={CONFIG}",
            f"--output_dir={output_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=conftest.REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = tf.saved_model.load(str(output_dir))
    outputs = loaded.signatures["segment_clip"](frames=tf.zeros([1, 2, 33, 45, 3], tf.uint8))
    assert outputs["panoptic"].shape == (1, 2, 33, 45)
