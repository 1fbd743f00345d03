"""Runs a Video-kMaX experiment: train, eval, train_and_eval or continuous_eval.

The order follows DeepLab2 and TFM: the distribution strategy; inside its scope the model,
the loss, the trainer (optimizer, distributed dataset) and the evaluator; a
`tf.train.Checkpoint` of the model's `checkpoint_items`, the optimizer and the global step
in a `CheckpointManager` whose `init_fn` applies `model_options.initial_checkpoint`; then
an `orbit.Controller` drives the mode.

Resuming is automatic: the controller restores the latest checkpoint in `model_dir`, and
since the learning-rate schedule is a function of the checkpointed optimizer step, a
killed job re-run with the same command continues with the same step, schedule and
optimizer state (a job preempted by SIGTERM first saves a checkpoint when
`trainer_options.preemption_checkpointing` is set, then exits with code 42). The resolved
config is written beside the checkpoints as `config.textproto`.
"""

import dataclasses
import functools
import os
import tempfile
from typing import Any

import orbit
import tensorflow as tf
import tf_keras
from absl import logging
from google.protobuf import text_format

from deeplab_video import common, datasets
from deeplab_video.data import pipeline
from deeplab_video.loss import loss_builder
from deeplab_video.model import builder, pretrained
from deeplab_video.post_processing import video_tracker
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import (
    distribution,
    evaluator,
    summaries,
    trainer,
)
from deeplab_video.trainer import optimizer as optimizer_lib

MODES = ("train", "eval", "train_and_eval", "continuous_eval")
# Logged when a run on a real dataset starts without model_options.initial_checkpoint.
NO_INITIAL_CHECKPOINT_WARNING = """
********************************************************************************
Training from RANDOM initialisation: model_options.initial_checkpoint is not set.
Every published Video-kMaX and kMaX-DeepLab result starts from pretrained weights
(an ImageNet backbone, then DeepLab2's COCO or Cityscapes kMaX-DeepLab). From
scratch, expect panoptic and tracking scores far below the paper's, near zero for
many thousand steps. Set initial_checkpoint to the checkpoint named at the top of
the config (README: "Run published weights").
********************************************************************************"""
CONFIG_FILE = "config.textproto"


def run_experiment(
    mode: str,
    options: config_pb2.ExperimentOptions,
    model_dir: str,
    num_gpus: int | None = None,
    master: str | None = None,
    strategy: str | None = None,
) -> dict[str, Any]:
    """Runs one experiment mode.

    Args:
        mode: "train", "eval", "train_and_eval" or "continuous_eval".
        options: the validated experiment (`config.load_config`).
        model_dir: checkpoints, summaries (train/, eval/), evaluation results and the
            resolved config go here; an existing checkpoint is resumed.
        num_gpus, master, strategy: command-line overrides of
            `trainer_options.distribution` (see `distribution.create_strategy`).

    Returns:
        The last evaluation's scalars (eval modes) or {"global_step": final step} (train).

    Raises:
        ValueError: unknown mode, a dataset missing for the mode, or a global batch that
            does not split over the replicas.
        FileNotFoundError: eval mode without a checkpoint in model_dir.
        trainer.NonFiniteLossError: a loss became NaN or infinite (nothing was saved).
    """
    _check_mode(mode, options, model_dir)
    trainer_options = options.trainer_options
    tf_keras.mixed_precision.set_global_policy(trainer_options.mixed_precision)
    if trainer_options.check_numerics:
        tf.debugging.enable_check_numerics()
    tf_keras.utils.set_random_seed(trainer_options.seed)
    run_strategy = distribution.create_strategy(
        trainer_options.distribution, num_gpus, master, strategy
    )
    is_chief = run_strategy.extended.should_checkpoint
    with run_strategy.scope():
        parts = _build_components(mode, options, model_dir if is_chief else None, run_strategy)
    manager = _checkpoint_manager(parts, options, model_dir, is_chief)
    if is_chief:
        write_config(options, model_dir)
    train_dir = os.path.join(model_dir, "train") if is_chief else None
    train_summaries = summaries.IntervalSummaryManager(
        train_dir, parts.global_step, trainer_options.save_summaries_steps
    )
    summaries.log_orbit_messages_once()
    controller = _controller(
        parts, trainer_options, manager, train_summaries, model_dir, run_strategy
    )
    if parts.trainer is not None:
        if manager.latest_checkpoint is None:
            controller.save_checkpoint()  # Step 0: a re-run never re-initialises.
        controller.train_actions = _train_actions(
            options, parts, train_summaries if is_chief else None, manager, run_strategy
        )
    logging.info("Running mode '%s' in %s", mode, model_dir)
    with run_strategy.scope():
        return _run_mode(mode, options, controller, parts.global_step)


def write_config(options: config_pb2.ExperimentOptions, model_dir: str) -> str:
    """Writes the resolved config as `<model_dir>/config.textproto`; returns the path.

    A different config already there (a resumed run whose file was edited) is kept as
    `config.textproto.previous` and a warning is logged.
    """
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, CONFIG_FILE)
    text = text_format.MessageToString(options)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            previous = f.read()
        if previous != text:
            logging.warning("The config differs from the one in %s; keeping the old copy.", path)
            tf.io.gfile.copy(path, path + ".previous", overwrite=True)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
    return path


def _check_mode(mode: str, options: config_pb2.ExperimentOptions, model_dir: str) -> None:
    """Fails early on an unknown mode, a missing dataset or nothing to evaluate."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(MODES)}")
    needs = {"train_dataset_options": "train" in mode, "eval_dataset_options": "eval" in mode}
    for field, needed in needs.items():
        if needed and not options.HasField(field):
            raise ValueError(f"mode '{mode}' needs {field} in the config")
    if mode == "eval" and not tf.train.latest_checkpoint(model_dir):
        raise FileNotFoundError(
            f"no checkpoint in {model_dir} to evaluate; train first (--mode=train) or use "
            "--mode=continuous_eval to wait for one"
        )


@dataclasses.dataclass
class _Components:
    """What run_experiment builds inside the strategy scope."""

    model: tf_keras.Model
    global_step: tf.Variable
    trainer: trainer.Trainer | None
    runner: video_tracker.VideoRunner | None
    evaluator: evaluator.Evaluator | None


def _build_components(
    mode: str,
    options: config_pb2.ExperimentOptions,
    output_dir: str | None,
    strategy: tf.distribute.Strategy,
) -> _Components:
    """Model, loss and trainer (training modes), video runner and evaluator (in scope)."""
    training = "train" in mode
    model = builder.build_model(options, inference_only=not training)
    global_step = orbit.utils.create_global_step()
    train_runner = _build_trainer(options, model, global_step, strategy) if training else None
    runner = eval_runner = recorder = None
    if "eval" in mode and options.evaluator_options.save_query_centre_plot:
        descriptor = datasets.get_descriptor(options.eval_dataset_options.dataset)
        recorder = evaluator.QueryCentreRecorder(descriptor)
    if options.HasField("eval_dataset_options"):
        runner = video_tracker.VideoRunner(model, options, clip_observer=recorder)
    if "eval" in mode:
        eval_runner = evaluator.Evaluator(runner, options, global_step, output_dir, recorder)
    return _Components(model, global_step, train_runner, runner, eval_runner)


def _build_trainer(
    options: config_pb2.ExperimentOptions,
    model: tf_keras.Model,
    global_step: tf.Variable,
    strategy: tf.distribute.Strategy,
) -> trainer.Trainer:
    """Loss, optimizer, distributed training data and the orbit trainer (in scope)."""
    dataset_options = options.train_dataset_options
    distribution.per_replica_batch_size(dataset_options, strategy)
    descriptor = datasets.get_descriptor(dataset_options.dataset)
    model_options = options.model_options
    loss = loss_builder.VideoKMaXLoss(
        options.trainer_options.loss_options,
        model_options.num_classes,
        descriptor.ignore_label,
        auxiliary_semantic_head=model_options.heads.auxiliary_semantic_head,
    )
    optimizer = optimizer_lib.build_optimizer(
        options.trainer_options.solver_options,
        model.trainable_variables,
        model.checkpoint_items["backbone"].trainable_variables,
        options.trainer_options.mixed_precision,
    )
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.build_clip_dataset(dataset_options, True, context)
    )
    return trainer.Trainer(
        model, loss, optimizer, dataset, global_step, options.trainer_options.jit_compile
    )


def _checkpoint_manager(
    parts: _Components, options: config_pb2.ExperimentOptions, model_dir: str, is_chief: bool
) -> tf.train.CheckpointManager:
    """The manager of model items + optimizer + global step, with initial_checkpoint."""
    items = dict(parts.model.checkpoint_items, global_step=parts.global_step)
    if parts.trainer is not None:
        items["optimizer"] = parts.trainer.optimizer
        checkpoint = tf.train.Checkpoint(**items)
    else:  # Evaluation restores a training checkpoint without its optimizer.
        checkpoint = _PartialCheckpoint(**items)
    trainer_options = options.trainer_options
    # Every worker must save (saving reads synchronised variables), but only the chief
    # into model_dir; the others write to a scratch folder and resume from model_dir.
    return tf.train.CheckpointManager(
        checkpoint,
        directory=model_dir if is_chief else tempfile.mkdtemp(prefix="deeplab_video_ckpt_"),
        max_to_keep=trainer_options.max_checkpoints_to_keep if is_chief else 1,
        step_counter=parts.global_step,
        checkpoint_interval=trainer_options.save_checkpoints_steps,
        init_fn=functools.partial(_initialize, model_dir, checkpoint, parts.model, options),
    )


class _PartialCheckpoint(tf.train.Checkpoint):
    """A checkpoint whose restores expect to leave values of the file unused.

    Without `expect_partial`, each restore of a training checkpoint into the evaluation
    model logs one warning per value it does not hold (the optimizer's slots, the
    training-only heads): hundreds of lines at every evaluation.
    """

    def restore(self, save_path: str, options: tf.train.CheckpointOptions | None = None):
        return super().restore(save_path, options=options).expect_partial()


def _initialize(
    model_dir: str,
    checkpoint: tf.train.Checkpoint,
    model: tf_keras.Model,
    options: config_pb2.ExperimentOptions,
) -> None:
    """The CheckpointManager's init_fn, called when its own folder has no checkpoint.

    Non-chief workers resume from the chief's latest checkpoint in model_dir; a fresh run
    starts from model_options.initial_checkpoint (any format `pretrained` reads; class
    heads for another dataset stay at initialisation), or warns that it starts from
    scratch on a real dataset.

    Raises:
        pretrained.CheckpointMismatchError: initial_checkpoint does not fit the model
            (other shapes outside the class heads, or nothing restored).
    """
    latest = tf.train.latest_checkpoint(model_dir)
    model_options = options.model_options
    if latest:
        checkpoint.restore(latest)
    elif model_options.initial_checkpoint:
        items = ("backbone",) if model_options.restore_mode == "backbone" else None
        report = pretrained.load_pretrained(model, model_options.initial_checkpoint, items)
        name = f"experiment '{options.experiment_name}'" if options.experiment_name else None
        report.check_fits(pretrained.describe_model(model_options, name), new_classes=True)
    elif options.train_dataset_options.dataset != datasets.SYNTHETIC.name:
        logging.warning(NO_INITIAL_CHECKPOINT_WARNING)


def _controller(
    parts: _Components,
    trainer_options: config_pb2.TrainerOptions,
    manager: tf.train.CheckpointManager,
    train_summaries: orbit.utils.SummaryManager,
    model_dir: str,
    strategy: tf.distribute.Strategy,
) -> orbit.Controller:
    """The orbit controller; its loops end on every checkpoint, summary and log step."""
    eval_dir = os.path.join(model_dir, "eval") if strategy.extended.should_checkpoint else None
    return orbit.Controller(
        strategy=strategy,
        trainer=parts.trainer,
        evaluator=parts.evaluator,
        global_step=parts.global_step,
        steps_per_loop=summaries.loop_lengths(
            trainer_options.steps_per_loop,
            trainer_options.save_checkpoints_steps,
            trainer_options.save_summaries_steps,
            trainer_options.log_every_steps,
            trainer_options.save_image_summaries_steps,
        ),
        checkpoint_manager=manager,
        # Distinct (non-None) folders keep orbit from sending eval scalars to train/.
        summary_dir=os.path.join(model_dir, "train"),
        eval_summary_dir=os.path.join(model_dir, "eval"),
        summary_manager=train_summaries,
        eval_summary_manager=orbit.utils.SummaryManager(
            eval_dir, tf.summary.scalar, parts.global_step
        ),
    )


def _train_actions(
    options: config_pb2.ExperimentOptions,
    parts: _Components,
    image_summaries: orbit.utils.SummaryManager | None,
    manager: tf.train.CheckpointManager,
    strategy: tf.distribute.Strategy,
) -> list:
    """Progress log, image summaries (chief) and preemption checkpointing, in that order."""
    trainer_options = options.trainer_options
    actions = [
        summaries.ProgressLogger(
            parts.global_step,
            trainer_options.solver_options.training_number_of_steps,
            trainer_options.log_every_steps,
        )
    ]
    every = trainer_options.save_image_summaries_steps
    if image_summaries is not None and parts.runner is not None and every > 0:
        clip = next(iter(pipeline.build_clip_dataset(options.eval_dataset_options, False)))
        actions.append(
            summaries.ImageSummaryAction(
                clip[common.IMAGE][0].numpy().astype("uint8"),
                clip[common.PANOPTIC][0].numpy(),
                parts.runner.run_sequence,
                datasets.get_descriptor(options.eval_dataset_options.dataset),
                image_summaries,
                parts.global_step,
                every,
            )
        )
    if trainer_options.preemption_checkpointing:
        actions.append(
            orbit.actions.SaveCheckpointIfPreempted(
                getattr(strategy, "cluster_resolver", None), manager, parts.global_step
            )
        )
    return actions


def _run_mode(
    mode: str,
    options: config_pb2.ExperimentOptions,
    controller: orbit.Controller,
    global_step: tf.Variable,
) -> dict[str, Any]:
    total_steps = options.trainer_options.solver_options.training_number_of_steps
    evaluator_options = options.evaluator_options
    if mode == "train":
        controller.train(steps=total_steps)
        return {"global_step": int(global_step.numpy())}
    if mode == "train_and_eval":
        return (
            controller.train_and_evaluate(
                train_steps=total_steps,
                eval_steps=-1,
                eval_interval=evaluator_options.eval_interval_steps,
            )
            or {}
        )
    if mode == "eval":
        return controller.evaluate(steps=-1)
    timeout = evaluator_options.continuous_eval_timeout
    output: dict[str, Any] = {}
    for path in tf.train.checkpoints_iterator(
        controller.checkpoint_manager.directory, timeout=None if timeout < 0 else timeout
    ):
        controller.restore_checkpoint(path)
        output = controller.evaluate(steps=-1)
        if int(global_step.numpy()) >= total_steps:
            break
    return output
