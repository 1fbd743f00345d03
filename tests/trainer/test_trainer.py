"""Tests for deeplab_video.trainer.trainer with a small Keras model and loss double.

The replica tests use two logical CPU devices (see tests/trainer/logical_cpus.py).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import orbit
import pytest
import tensorflow as tf
import tf_keras

from deeplab_video import common, config, datasets
from deeplab_video.data import pipeline, synthetic
from deeplab_video.loss import loss_builder
from deeplab_video.model import builder
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import optimizer as optimizer_lib
from deeplab_video.trainer import trainer as trainer_lib
from tests import conftest
from tests.trainer import logical_cpus

_CLIP_SHAPE = (2, 4, 4, 3)  # num_frames, height, width, channels

logical_cpus.configure()


class _SquaredErrorLoss:
    """Loss double: per-sample squared error between the logits and a target."""

    def get_loss_names(self):
        return (common.LOSS_TOTAL, "squared_error")

    def __call__(self, targets, predictions):
        target = tf.cast(targets[common.SEMANTIC][:, :1, 0, 0], tf.float32)  # [batch, 1]
        error = tf.reduce_sum(tf.square(predictions["logits"] - target), axis=-1)
        return {"squared_error": error, common.LOSS_TOTAL: 2.0 * error}


def _model(seed: int = 0) -> tf_keras.Model:
    """Flatten + two Dense layers (no batch-dependent ops), dict output."""
    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input(_CLIP_SHAPE)
    hidden = tf_keras.layers.Dense(5, activation="relu", name="backbone_dense")(
        tf_keras.layers.Flatten()(inputs)
    )
    logits = tf_keras.layers.Dense(3, name="head_dense")(hidden)
    return tf_keras.Model(inputs, {"logits": logits})


def _examples(num: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        common.IMAGE: rng.uniform(0, 1, (num, *_CLIP_SHAPE)).astype(np.float32),
        common.SEMANTIC: rng.integers(0, 3, (num, *_CLIP_SHAPE[:3])).astype(np.int32),
    }


def _solver(**fields) -> config_pb2.SolverOptions:
    solver = config_pb2.SolverOptions(
        optimizer="adamw",
        base_learning_rate=0.05,
        warmup_steps=0,
        training_number_of_steps=100,
        backbone_learning_rate_multiplier=0.5,
    )
    for name, value in fields.items():
        setattr(solver, name, value)
    return solver


def _build(
    strategy, examples, global_batch, solver=None, mixed_precision="float32", jit_compile=False
):
    """Builds model, optimizer and trainer in the strategy scope."""
    dataset = tf.data.Dataset.from_tensor_slices(examples).batch(global_batch).repeat()
    with strategy.scope():
        model = _model()
        backbone = model.get_layer("backbone_dense").trainable_variables
        optimizer = optimizer_lib.build_optimizer(
            solver or _solver(), model.trainable_variables, backbone, mixed_precision
        )
        global_step = orbit.utils.create_global_step()
        trainer = trainer_lib.Trainer(
            model,
            _SquaredErrorLoss(),
            optimizer,
            strategy.experimental_distribute_dataset(dataset),
            global_step,
            jit_compile=jit_compile,
        )
    return trainer


def _weights(trainer) -> list[np.ndarray]:
    return [v.numpy() for v in trainer.model.trainable_variables]


def test_train_output_and_step_counter():
    trainer = _build(tf.distribute.get_strategy(), _examples(8), global_batch=4)
    output = trainer.train(tf.constant(3))
    assert int(trainer.global_step.numpy()) == 3
    assert int(trainer.optimizer.iterations.numpy()) == 3
    assert set(output) == {
        "losses/" + common.LOSS_TOTAL,
        "losses/squared_error",
        trainer_lib.LEARNING_RATE,
    }
    np.testing.assert_allclose(
        output["losses/" + common.LOSS_TOTAL], 2 * output["losses/squared_error"], rtol=1e-6
    )
    np.testing.assert_allclose(output[trainer_lib.LEARNING_RATE], 0.05 * (1 - 3 / 100) ** 0.9)


def test_loss_decreases():
    trainer = _build(tf.distribute.get_strategy(), _examples(4), global_batch=4)
    first = float(trainer.train(tf.constant(1))["losses/" + common.LOSS_TOTAL])
    trainer.train(tf.constant(30))
    last = float(trainer.train(tf.constant(1))["losses/" + common.LOSS_TOTAL])
    assert last < 0.5 * first


def test_jit_compiled_step_matches():
    plain = _build(tf.distribute.get_strategy(), _examples(4), global_batch=2)
    compiled = _build(tf.distribute.get_strategy(), _examples(4), global_batch=2, jit_compile=True)
    plain.train(tf.constant(3))
    compiled.train(tf.constant(3))
    for a, b in zip(_weights(plain), _weights(compiled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_loss_without_total_is_rejected():
    class _NoTotal(_SquaredErrorLoss):
        def get_loss_names(self):
            return ("squared_error",)

    with pytest.raises(ValueError, match="total_loss"):
        trainer_lib.Trainer(_model(), _NoTotal(), None, None, orbit.utils.create_global_step())


def test_non_finite_loss_names_step_and_term():
    examples = _examples(6)
    examples[common.IMAGE][2, 0, 0, 0, 0] = np.nan  # The third clip: step 3 at batch 1.
    trainer = _build(tf.distribute.get_strategy(), examples, global_batch=1)
    trainer.train(tf.constant(2))
    with pytest.raises(trainer_lib.NonFiniteLossError, match="at step 3 in") as error:
        trainer.train(tf.constant(3))
    assert error.value.step == 3
    # Which terms a NaN pixel poisons depends on the CPU's kernels (oneDNN's vectorised
    # ReLU maps NaN to 0, so on some CPUs only the gradient norm is non-finite): the
    # promise is that the error names at least one of them and nothing else.
    assert error.value.terms
    assert set(error.value.terms) <= {
        common.LOSS_TOTAL,
        "squared_error",
        trainer_lib.GRADIENT_NORM,
    }


def test_finite_loss_with_non_finite_gradients_stops():
    class _SqrtAtZero(_SquaredErrorLoss):
        """Loss 0 whose gradient is NaN (d sqrt(u) / du at u = 0 is infinite)."""

        def __call__(self, targets, predictions):
            error = tf.reduce_sum(tf.sqrt(0.0 * predictions["logits"]), axis=-1)
            return {"squared_error": error, common.LOSS_TOTAL: error}

    with tf.distribute.get_strategy().scope():
        model = _model()
        optimizer = optimizer_lib.build_optimizer(_solver(), model.trainable_variables)
        dataset = tf.data.Dataset.from_tensor_slices(_examples(4)).batch(2).repeat()
        trainer = trainer_lib.Trainer(
            model, _SqrtAtZero(), optimizer, dataset, orbit.utils.create_global_step()
        )
    with pytest.raises(trainer_lib.NonFiniteLossError, match="at step 1 in gradient_norm"):
        trainer.train(tf.constant(2))


def test_non_finite_loss_writes_no_checkpoint(tmp_path):
    examples = _examples(6)
    examples[common.IMAGE][2] = np.inf
    trainer = _build(tf.distribute.get_strategy(), examples, global_batch=1)
    checkpoint = tf.train.Checkpoint(model=trainer.model, global_step=trainer.global_step)
    manager = tf.train.CheckpointManager(
        checkpoint,
        str(tmp_path),
        max_to_keep=5,
        step_counter=trainer.global_step,
        checkpoint_interval=1,
    )
    controller = orbit.Controller(
        trainer=trainer,
        global_step=trainer.global_step,
        steps_per_loop=2,
        checkpoint_manager=manager,
    )
    with pytest.raises(trainer_lib.NonFiniteLossError):
        controller.train(steps=6)
    assert manager.latest_checkpoint.endswith("ckpt-2")
    restored = _model(seed=5)
    tf.train.Checkpoint(model=restored).restore(manager.latest_checkpoint).expect_partial()
    assert all(np.isfinite(v.numpy()).all() for v in restored.trainable_variables)


def test_mixed_float16_trains_with_loss_scaling():
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        trainer = _build(
            tf.distribute.get_strategy(), _examples(4), 4, mixed_precision="mixed_float16"
        )
        first = trainer.train(tf.constant(1))["losses/" + common.LOSS_TOTAL]
        trainer.train(tf.constant(30))
        last = trainer.train(tf.constant(1))["losses/" + common.LOSS_TOTAL]
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert trainer.model.get_layer("head_dense").compute_dtype == "float16"
    assert isinstance(trainer.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    # The losses are computed in float32 from outputs cast to float32.
    assert last.dtype == tf.float32
    assert np.isfinite(last)
    # Overflowing first steps only lowered the dynamic loss scale (no error, no NaN).
    assert float(trainer.optimizer.loss_scale) < 2.0**15
    assert float(last) < 0.5 * float(first)


def test_two_replicas_match_one_device():
    if logical_cpus.rerun_isolated(__file__, "test_two_replicas_match_one_device"):
        return
    examples = _examples(8)
    single = _build(tf.distribute.OneDeviceStrategy("/cpu:0"), examples, global_batch=4)
    mirrored_strategy = tf.distribute.MirroredStrategy(logical_cpus.DEVICES)
    mirrored = _build(mirrored_strategy, examples, global_batch=4)
    assert mirrored_strategy.num_replicas_in_sync == 2
    single_output = single.train(tf.constant(2))
    mirrored_output = mirrored.train(tf.constant(2))
    assert int(mirrored.global_step.numpy()) == 2
    for name, value in single_output.items():
        np.testing.assert_allclose(mirrored_output[name], value, rtol=1e-5, err_msg=name)
    for a, b in zip(_weights(single), _weights(mirrored), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Training actually moved the weights.
    assert not np.allclose(
        _weights(single)[0],
        _weights(_build(tf.distribute.get_strategy(), examples, global_batch=4))[0],
    )


def test_non_finite_on_one_replica_stops_all():
    if logical_cpus.rerun_isolated(__file__, "test_non_finite_on_one_replica_stops_all"):
        return
    examples = _examples(8)
    examples[common.IMAGE][5] = np.nan  # Second batch, second replica.
    strategy = tf.distribute.MirroredStrategy(logical_cpus.DEVICES)
    trainer = _build(strategy, examples, global_batch=4)
    with pytest.raises(trainer_lib.NonFiniteLossError, match="at step 2 in"):
        trainer.train(tf.constant(2))


def _real_setup(tmp_path):
    """Tiny Video-kMaX options (sync BN, every pixel in the losses) and one global batch."""
    options = config.load_config(conftest.CONFIG_DIR / "synthetic/tiny_online.textproto")
    options.model_options.backbone.use_sync_batchnorm = True
    # The auxiliary head's ASPP normalises image-pooled features, 2 values per channel
    # here: its synchronised variance (E[x^2] - E[x]^2) is too ill-conditioned to compare.
    options.model_options.heads.auxiliary_semantic_head = False
    options.trainer_options.loss_options.instance_discrimination_sample_k = 0
    options.trainer_options.loss_options.auxiliary_semantic_sample_k = 0
    small = synthetic.SyntheticConfig(
        num_train_sequences=2,
        num_val_sequences=1,
        min_frames=3,
        max_frames=3,
        height=64,
        width=64,
        num_train_shards=1,
        num_val_shards=1,
        write_pngs=False,
    )
    data_dir = synthetic.ensure_synthetic_dataset(tmp_path / "data", small)
    dataset_options = options.train_dataset_options
    dataset_options.file_pattern[:] = [str(tmp_path / "data/train-*.tfrecord")]
    dataset_options.crop_size[:] = [65, 65]
    dataset_options.batch_size = 2
    dataset_options.deterministic = True
    batch = next(iter(pipeline.build_clip_dataset(dataset_options, is_training=True)))
    assert data_dir
    return options, batch


def _train_real(options, batch, strategy) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights (initial, after 2 SGD steps) of the tiny model trained on `batch`."""
    solver = config_pb2.SolverOptions(
        optimizer="sgd", base_learning_rate=0.01, warmup_steps=0, training_number_of_steps=10
    )
    descriptor = datasets.get_descriptor("synthetic")
    with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        model = builder.build_model(options)
        loss = loss_builder.VideoKMaXLoss(
            options.trainer_options.loss_options,
            options.model_options.num_classes,
            descriptor.ignore_label,
            auxiliary_semantic_head=options.model_options.heads.auxiliary_semantic_head,
        )
        optimizer = optimizer_lib.build_optimizer(solver, model.trainable_variables)
        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(batch).repeat()
        )
        trainer = trainer_lib.Trainer(
            model, loss, optimizer, dataset, orbit.utils.create_global_step()
        )
    initial = [v.numpy() for v in model.weights]
    trainer.train(tf.constant(2))
    return initial, [v.numpy() for v in model.weights]


@pytest.mark.slow
def test_two_replicas_match_one_device_with_the_real_model(tmp_path):
    """Video-kMaX with sync BN: 2 x 1 clips on two replicas = 2 clips on one device."""
    if logical_cpus.rerun_isolated(
        __file__, "test_two_replicas_match_one_device_with_the_real_model"
    ):
        return
    options, batch = _real_setup(tmp_path)
    initial, single = _train_real(options, batch, tf.distribute.OneDeviceStrategy("/cpu:0"))
    _, mirrored = _train_real(options, batch, tf.distribute.MirroredStrategy(logical_cpus.DEVICES))
    # Every variable (BN moving statistics included: sync BN sees the global batch) moves
    # by the same update, up to float32 noise (~1e-9 on updates that are noise themselves).
    for start, a, b in zip(initial, single, mirrored, strict=True):
        update = np.linalg.norm(a - start)
        assert np.linalg.norm(b - a) <= 0.05 * update + 1e-7
    moved = [np.linalg.norm(a - start) > 1e-6 for start, a in zip(initial, single, strict=True)]
    assert sum(moved) >= 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_main(output_path: str) -> None:
    """Entry of a MultiWorkerMirroredStrategy worker (TF_CONFIG set by the test)."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    trainer = _build(strategy, _examples(8), global_batch=4)
    trainer.train(tf.constant(3))
    with open(output_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "step": int(trainer.global_step.numpy()),
                "weights": [w.tolist() for w in _weights(trainer)],
            },
            f,
        )


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": ""}
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, str(tmp_path / f"worker{index}.json")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out[-3000:]
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [r["step"] for r in results] == [3, 3]
    single = _build(tf.distribute.get_strategy(), _examples(8), global_batch=4)
    single.train(tf.constant(3))
    for w0, w1, ws in zip(
        results[0]["weights"], results[1]["weights"], _weights(single), strict=True
    ):
        np.testing.assert_allclose(w0, w1, rtol=1e-6)
        np.testing.assert_allclose(w0, ws, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    _worker_main(sys.argv[1])
