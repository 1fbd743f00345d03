"""Tests for deeplab_video.trainer.train_lib: end-to-end runs of the tiny synthetic model.

The fast tests check argument handling without building a model. The slow ones train the
tiny config (configs/synthetic/tiny_online.textproto, at 65x65 crops and batch 1) on a
small synthetic dataset: artefacts of a run, loss decrease, schedule, evaluation, initial
checkpoints, non-finite losses, and resuming after SIGTERM (preemption) and SIGKILL.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from deeplab_video import common, config
from deeplab_video.data import pipeline, synthetic
from deeplab_video.model import builder, pretrained
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import optimizer as optimizer_lib
from deeplab_video.trainer import train_lib, trainer
from tests import conftest

_TOTAL_STEPS = 30


def _options(data_dir: str, total_steps: int, **trainer_fields) -> config_pb2.ExperimentOptions:
    """The tiny online config on `data_dir`, with small crops and every interval at 5."""
    options = config.load_config(conftest.CONFIG_DIR / "synthetic/tiny_online.textproto")
    for dataset, split in (
        (options.train_dataset_options, "train"),
        (options.eval_dataset_options, "val"),
    ):
        dataset.file_pattern[:] = [os.path.join(data_dir, f"{split}-*.tfrecord")]
    options.train_dataset_options.batch_size = 1
    options.train_dataset_options.shuffle_buffer_size = 8
    options.train_dataset_options.crop_size[:] = [65, 65]
    trainer_options = options.trainer_options
    for name in ("steps_per_loop", "save_checkpoints_steps", "save_summaries_steps"):
        setattr(trainer_options, name, 5)
    trainer_options.log_every_steps = 5
    trainer_options.save_image_summaries_steps = 0
    trainer_options.solver_options.training_number_of_steps = total_steps
    trainer_options.solver_options.warmup_steps = min(2, total_steps - 1)
    for name, value in trainer_fields.items():
        setattr(trainer_options, name, value)
    options.evaluator_options.eval_interval_steps = total_steps
    return options


def _events(directory: str) -> dict[str, dict[int, object]]:
    """{tag: {step: value}} of the event files in `directory` (scalars as floats)."""
    values: dict[str, dict[int, object]] = {}
    for path in tf.io.gfile.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                scalar = float(tensor) if tensor.ndim == 0 else tensor
                values.setdefault(value.tag, {})[event.step] = scalar
    return values


def _checkpoint_value(model_dir: str, key: str) -> np.ndarray:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    return reader.get_tensor(key + "/.ATTRIBUTES/VARIABLE_VALUE")


# ------------------------------------------------------------------------------ fast


def test_unknown_mode_and_missing_datasets(tmp_path):
    options = _options(str(tmp_path), 10)
    with pytest.raises(ValueError, match="unknown mode 'predict'"):
        train_lib.run_experiment("predict", options, str(tmp_path))
    options.ClearField("eval_dataset_options")
    with pytest.raises(ValueError, match="needs eval_dataset_options"):
        train_lib.run_experiment("train_and_eval", options, str(tmp_path))


def test_eval_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        train_lib.run_experiment("eval", _options(str(tmp_path), 10), str(tmp_path))


def test_write_config_keeps_a_changed_previous_copy(tmp_path):
    options = _options(str(tmp_path), 10)
    path = train_lib.write_config(options, str(tmp_path / "model"))
    parsed = text_format.Parse(open(path).read(), config_pb2.ExperimentOptions())
    assert parsed == options
    train_lib.write_config(options, str(tmp_path / "model"))
    assert not os.path.exists(path + ".previous")
    changed = _options(str(tmp_path), 20)
    train_lib.write_config(changed, str(tmp_path / "model"))
    previous = text_format.Parse(open(path + ".previous").read(), config_pb2.ExperimentOptions())
    assert previous == options


def test_fresh_run_on_a_real_dataset_warns_without_initial_checkpoint(tmp_path, caplog):
    options = _options(str(tmp_path), 10)
    model = builder.build_model(options)
    train_lib._initialize(str(tmp_path), tf.train.Checkpoint(), model, options)
    assert "RANDOM initialisation" not in caplog.text  # synthetic: from scratch is the plan
    options.train_dataset_options.dataset = "kitti_step"
    train_lib._initialize(str(tmp_path), tf.train.Checkpoint(), model, options)
    assert "Training from RANDOM initialisation" in caplog.text
    assert "initial_checkpoint" in caplog.text


def test_initial_checkpoint_of_another_architecture_is_one_error(tmp_path):
    options = _options(str(tmp_path), 10)
    other = config_pb2.ExperimentOptions()
    other.CopyFrom(options)
    other.model_options.backbone.width_multiplier *= 2
    source = tf.train.Checkpoint(**builder.build_model(other).checkpoint_items)
    options.model_options.initial_checkpoint = source.save(str(tmp_path / "other" / "ckpt"))
    model = builder.build_model(options)
    with pytest.raises(pretrained.CheckpointMismatchError) as error:
        train_lib._initialize(str(tmp_path / "run"), tf.train.Checkpoint(), model, options)
    message = str(error.value)
    assert options.model_options.initial_checkpoint in message
    assert f"experiment '{options.experiment_name}'" in message
    assert "backbone/" in message and "has another shape" in message


# ------------------------------------------------------------------------------ slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    small = synthetic.SyntheticConfig(
        num_train_sequences=4,
        num_val_sequences=1,
        min_frames=4,
        max_frames=5,
        height=64,
        width=64,
        num_train_shards=2,
        num_val_shards=1,
        write_pngs=False,
    )
    return synthetic.ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), small)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> tuple[str, config_pb2.ExperimentOptions]:
    """A 30-step training run (checkpoints every 10, two kept, images at step 30)."""
    model_dir = str(tmp_path_factory.mktemp("trained"))
    options = _options(
        data_dir,
        _TOTAL_STEPS,
        save_checkpoints_steps=10,
        max_checkpoints_to_keep=2,
        save_image_summaries_steps=_TOTAL_STEPS,
    )
    output = train_lib.run_experiment("train", options, model_dir)
    assert output == {"global_step": _TOTAL_STEPS}
    return model_dir, options


@pytest.mark.slow
def test_run_writes_checkpoints_config_and_summaries(trained):
    model_dir, options = trained
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-30")
    kept = tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == ["ckpt-20", "ckpt-30"]
    assert _checkpoint_value(model_dir, "global_step") == _TOTAL_STEPS
    assert _checkpoint_value(model_dir, "optimizer/_iterations") == _TOTAL_STEPS
    saved = open(os.path.join(model_dir, train_lib.CONFIG_FILE)).read()
    assert text_format.Parse(saved, config_pb2.ExperimentOptions()) == options
    events = _events(os.path.join(model_dir, "train"))
    for tag in ("losses/" + common.LOSS_TOTAL, "losses/" + common.LOSS_PQ_STYLE, "learning_rate"):
        assert sorted(events[tag]) == [5, 10, 15, 20, 25, 30], tag
    assert sorted(events["steps_per_second"]) == [5, 10, 15, 20, 25, 30]
    for tag in ("images/frames", "images/ground_truth", "images/prediction"):
        assert sorted(events[tag]) == [30], tag


@pytest.mark.slow
def test_training_loss_decreases_and_schedule_is_logged(trained):
    model_dir, options = trained
    events = _events(os.path.join(model_dir, "train"))
    total = events["losses/" + common.LOSS_TOTAL]
    assert np.mean([total[25], total[30]]) < np.mean([total[5], total[10]])
    schedule = optimizer_lib.build_learning_rate_schedule(options.trainer_options.solver_options)
    for step, rate in events["learning_rate"].items():
        np.testing.assert_allclose(rate, float(schedule(step)), rtol=1e-5, atol=1e-9)


@pytest.mark.slow
def test_eval_modes_score_the_latest_checkpoint(trained):
    model_dir, options = trained
    scalars = train_lib.run_experiment("eval", options, model_dir)
    assert 0.0 <= scalars["STQ"] <= 1.0 and scalars["num_sequences"] == 1
    assert os.path.exists(os.path.join(model_dir, "eval", "metrics_step_00000030.json"))
    assert 30 in _events(os.path.join(model_dir, "eval"))["STQ"]
    # continuous_eval evaluates the checkpoint there and stops: it is the last one.
    continuous = train_lib.run_experiment("continuous_eval", options, model_dir)
    assert continuous["STQ"] == pytest.approx(scalars["STQ"])


@pytest.mark.slow
def test_initial_checkpoint_restores_the_backbone_only(trained, data_dir, tmp_path):
    source_dir, _ = trained
    options = _options(data_dir, 1, save_checkpoints_steps=1)
    options.model_options.initial_checkpoint = source_dir
    options.model_options.restore_mode = "backbone"
    options.trainer_options.seed = 7
    train_lib.run_experiment("train", options, str(tmp_path))
    source = tf.train.load_checkpoint(tf.train.latest_checkpoint(source_dir))
    start = tf.train.load_checkpoint(str(tmp_path / "ckpt-0"))
    names = [n for n, _ in tf.train.list_variables(str(tmp_path / "ckpt-0"))]
    backbone = [n for n in names if n.startswith("backbone/") and "moving_" not in n]
    head = [n for n in names if n.startswith("prediction_head/")]
    assert backbone and head
    for name in backbone:
        np.testing.assert_array_equal(start.get_tensor(name), source.get_tensor(name), name)
    assert any(not np.array_equal(start.get_tensor(n), source.get_tensor(n)) for n in head)


@pytest.mark.slow
def test_non_finite_loss_stops_without_checkpoint(data_dir, tmp_path, monkeypatch):
    build = pipeline.build_clip_dataset

    def poisoned(options, is_training, input_context=None):
        dataset = build(options, is_training, input_context)
        if not is_training:
            return dataset

        def poison(index, element):
            element = dict(element)
            nan = tf.fill(tf.shape(element[common.IMAGE]), float("nan"))
            element[common.IMAGE] = tf.where(index == 2, nan, element[common.IMAGE])
            return element

        return dataset.enumerate().map(poison)

    monkeypatch.setattr(pipeline, "build_clip_dataset", poisoned)
    options = _options(data_dir, 10, steps_per_loop=1, save_checkpoints_steps=1)
    options.trainer_options.log_every_steps = 1
    options.trainer_options.save_summaries_steps = 1
    with pytest.raises(trainer.NonFiniteLossError, match="at step 3 in") as error:
        train_lib.run_experiment("train", options, str(tmp_path))
    # Which terms the NaN frames poison depends on the CPU's kernels (see test_trainer).
    assert error.value.terms
    loss_terms = {
        common.LOSS_TOTAL,
        common.LOSS_PQ_STYLE,
        common.LOSS_MASK_ID_CROSS_ENTROPY,
        common.LOSS_INSTANCE_DISCRIMINATION,
        common.LOSS_AUXILIARY_SEMANTIC,
    }
    assert set(error.value.terms) <= {*loss_terms, trainer.GRADIENT_NORM}
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-2"))
    for name, _ in tf.train.list_variables(str(tmp_path / "ckpt-2")):
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def _start(command: list[str], log_path) -> subprocess.Popen:
    log = open(log_path, "w")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        command, cwd=conftest.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
    )


def _wait_for_checkpoint_after(model_dir, step: int, process, timeout: float = 900) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = tf.train.latest_checkpoint(str(model_dir))
        if latest and int(latest.rsplit("-", 1)[1]) > step:
            return int(latest.rsplit("-", 1)[1])
        assert process.poll() is None, "training exited before the checkpoint"
        time.sleep(0.5)
    raise TimeoutError(f"no checkpoint after step {step} in {timeout} s")


@pytest.mark.slow
def test_preemption_and_kill_then_resume(data_dir, tmp_path):
    """SIGTERM saves a checkpoint and exits 42; SIGKILL loses only the last steps; a
    re-run of the same command continues the step count, optimizer and schedule."""
    total = 40
    options = _options(data_dir, total, steps_per_loop=1, save_checkpoints_steps=8)
    options.trainer_options.log_every_steps = 1
    options.trainer_options.save_summaries_steps = 1
    config_file = tmp_path / "experiment.textproto"
    config_file.write_text(text_format.MessageToString(options))
    model_dir = tmp_path / "model"
    flags = [f"--config_file={config_file}", f"--model_dir={model_dir}", "--mode=train"]
    scripts = [
        [sys.executable, "trainer/train.py", *flags],
        [sys.executable, "-m", "deeplab_video.trainer.train", *flags],
    ]

    # 1. Preemption: SIGTERM after the first regular checkpoint.
    process = _start(scripts[0], tmp_path / "run1.log")
    _wait_for_checkpoint_after(model_dir, 0, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=600) == 42, (tmp_path / "run1.log").read_text()[-3000:]
    preempted = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert 8 < preempted < total  # saved at the preemption, not at an interval

    # 2. Resume, then SIGKILL after the next checkpoint.
    process = _start(scripts[1], tmp_path / "run2.log")
    killed_after = _wait_for_checkpoint_after(model_dir, preempted, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    log = (tmp_path / "run2.log").read_text()
    assert f"ckpt-{preempted}" in log and "restored" in log

    # 3. Resume to the end.
    process = _start(scripts[0], tmp_path / "run3.log")
    assert process.wait(timeout=1800) == 0, (tmp_path / "run3.log").read_text()[-3000:]
    log = (tmp_path / "run3.log").read_text()
    assert f"ckpt-{killed_after}" in log
    assert _checkpoint_value(model_dir, "global_step") == total
    assert _checkpoint_value(model_dir, "optimizer/_iterations") == total
    events = _events(str(model_dir / "train"))
    rates = events["learning_rate"]
    schedule = optimizer_lib.build_learning_rate_schedule(options.trainer_options.solver_options)
    assert max(rates) == total
    for step, rate in rates.items():
        np.testing.assert_allclose(rate, float(schedule(step)), rtol=1e-5, atol=1e-9)


def _run_to_the_end(command: list[str], log_path) -> str:
    """Runs a training command; it must exit with status 0 (and not hang). Returns its log."""
    process = _start(command, log_path)
    try:
        status = process.wait(timeout=900)
    finally:
        process.kill()
    log = log_path.read_text()
    assert status == 0, f"{command[2:]}:\n{log[-3000:]}"
    return log


@pytest.mark.slow
def test_every_mode_exits_after_its_last_step_after_a_kill_and_resume(data_dir, tmp_path):
    """kill -9 at a checkpoint and resume; then every mode runs to its end and exits 0.

    A process once trained to its last step after such a resume and never exited: its
    input pipeline's iterator, left in a reference cycle, was destroyed while the
    interpreter shut down, with a prefetch thread inside the pipeline's Python generator
    (see the atexit hook of deeplab_video.data.pipeline).
    """
    config_file = tmp_path / "experiment.textproto"
    model_dir = tmp_path / "model"
    command = [sys.executable, "trainer/train.py", f"--config_file={config_file}"]
    command.append(f"--model_dir={model_dir}")
    intervals = dict(steps_per_loop=1, save_checkpoints_steps=4, save_image_summaries_steps=4)
    config_file.write_text(text_format.MessageToString(_options(data_dir, 8, **intervals)))
    process = _start([*command, "--mode=train"], tmp_path / "killed.log")
    _wait_for_checkpoint_after(model_dir, 0, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    _run_to_the_end([*command, "--mode=train"], tmp_path / "train.log")
    assert _checkpoint_value(model_dir, "global_step") == 8

    config_file.write_text(text_format.MessageToString(_options(data_dir, 12, **intervals)))
    for mode in ("train_and_eval", "eval", "continuous_eval"):
        log = _run_to_the_end([*command, f"--mode={mode}"], tmp_path / f"{mode}.log")
        # Evaluation restores the training checkpoint partially, without a warning flood.
        assert "could not be found in the restored object" not in log
    assert _checkpoint_value(model_dir, "global_step") == 12
