"""The orbit trainer of Video-kMaX: one synchronous data-parallel training step.

`train_step` holds graph ops only (forward, loss, gradients, update, metric updates);
host work (metric read-out, the non-finite check) happens in `train_loop_end`, after
every loop of steps and before the controller may save a checkpoint.

A non-finite loss never passes silently (DeepLab2 replaces it by 0): every step
all-reduces a "non-finite" flag per loss term and for the gradients' global norm (except
under loss scaling, where overflowing steps are expected and skipped by the
LossScaleOptimizer), remembers the first step at which one was set, and `train_loop_end`
raises `NonFiniteLossError` naming that step and the terms. The error propagates out of the
controller before its checkpoint save, so no checkpoint is written from the corrupted state.
"""

from collections.abc import Mapping, Sequence

import orbit
import tensorflow as tf
import tf_keras

from deeplab_video import common
from deeplab_video.trainer import optimizer as optimizer_lib

# Prefix of the per-term loss entries in the train output (and TensorBoard tags).
LOSS_PREFIX = "losses/"
LEARNING_RATE = "learning_rate"
# Name of the gradients' global norm among the non-finite checks.
GRADIENT_NORM = "gradient_norm"


class NonFiniteLossError(FloatingPointError):
    """A loss term (or the gradient norm) became NaN or infinite; nothing was saved.

    Attributes:
        step: the global step at which the first non-finite value appeared.
        terms: names of the non-finite loss terms (or GRADIENT_NORM) at that step.
    """

    def __init__(self, step: int, terms: Sequence[str]):
        self.step = step
        self.terms = tuple(terms)
        super().__init__(
            f"non-finite loss at step {step} in {', '.join(self.terms)}; training stopped "
            "and no checkpoint was written from this state. Resume from the last "
            "checkpoint with a lower learning rate or gradient clipping "
            "(trainer_options.solver_options.gradient_clip_norm), or set "
            "trainer_options.check_numerics to locate the op that produced it."
        )


class Trainer(orbit.StandardTrainer):
    """Trains a clip model with a dict-of-losses objective under a tf.distribute strategy.

    Create it inside the strategy's scope (the metrics and bookkeeping variables are
    created here, before step 1).
    """

    def __init__(
        self,
        model: tf_keras.Model,
        loss: tf_keras.layers.Layer,
        optimizer: tf_keras.optimizers.Optimizer,
        train_dataset: tf.distribute.DistributedDataset | tf.data.Dataset,
        global_step: tf.Variable,
        jit_compile: bool = False,
    ):
        """Initialises the trainer.

        Args:
            model: maps a clip, float32 [batch, num_frames, height, width, 3], to the
                dict of `common.PRED_*` outputs.
            loss: has `get_loss_names()` and is called as loss(targets, predictions),
                returning per-sample float32 [batch] losses keyed by those names, one of
                which is `common.LOSS_TOTAL`.
            optimizer: from `optimizer.build_optimizer` (possibly a LossScaleOptimizer).
            train_dataset: distributed dataset of clip dicts (keys in `common`).
            global_step: int64 step counter (orbit.utils.create_global_step()).
            jit_compile: compile the forward and backward pass with XLA.

        Raises:
            ValueError: the loss does not publish `common.LOSS_TOTAL`.
        """
        super().__init__(
            train_dataset, options=orbit.StandardTrainerOptions(use_tf_while_loop=True)
        )
        self._strategy = tf.distribute.get_strategy()
        self._model = model
        self._loss = loss
        self._optimizer = optimizer
        self._global_step = global_step
        self._loss_names = tuple(loss.get_loss_names())
        if common.LOSS_TOTAL not in self._loss_names:
            raise ValueError(f"the loss publishes {self._loss_names} but not '{common.LOSS_TOTAL}'")
        self._loss_metrics = {
            name: tf_keras.metrics.Mean(name, dtype=tf.float32) for name in self._loss_names
        }
        self._first_non_finite_step = tf.Variable(
            -1,
            dtype=tf.int64,
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            name="first_non_finite_step",
        )
        self._checked_names = self._loss_names
        if not isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
            self._checked_names += (GRADIENT_NORM,)
        self._non_finite_terms = tf.Variable(
            tf.zeros([len(self._checked_names)], tf.int32),
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            name="non_finite_terms",
        )
        self._gradients_fn = (
            tf.function(self._compute_gradients, jit_compile=True)
            if jit_compile
            else self._compute_gradients
        )

    @property
    def model(self) -> tf_keras.Model:
        return self._model

    @property
    def optimizer(self) -> tf_keras.optimizers.Optimizer:
        return self._optimizer

    @property
    def global_step(self) -> tf.Variable:
        return self._global_step

    @property
    def strategy(self) -> tf.distribute.Strategy:
        return self._strategy

    @property
    def loss_names(self) -> tuple[str, ...]:
        return self._loss_names

    def train_loop_begin(self) -> None:
        for metric in self._loss_metrics.values():
            metric.reset_states()

    def train_step(self, iterator) -> None:
        self._strategy.run(self._replica_step, args=(next(iterator),))

    def train_loop_end(self) -> dict[str, tf.Tensor]:
        """Raises on a non-finite loss; returns the loop's mean losses and the rate.

        Raises:
            NonFiniteLossError: a loss term was non-finite at some step of the loop.
        """
        step = int(self._first_non_finite_step.numpy())
        if step >= 0:
            flags = self._non_finite_terms.numpy()
            terms = [name for name, flag in zip(self._checked_names, flags, strict=True) if flag]
            raise NonFiniteLossError(step, terms)
        output = {
            LOSS_PREFIX + name: metric.result() for name, metric in self._loss_metrics.items()
        }
        output[LEARNING_RATE] = optimizer_lib.current_learning_rate(self._optimizer)
        return output

    def _replica_step(self, inputs: Mapping[str, tf.Tensor]) -> None:
        """One step on one replica's share of the global batch."""
        losses, gradients = self._gradients_fn(inputs)
        variables = self._model.trainable_variables
        self._optimizer.apply_gradients(zip(gradients, variables, strict=True))
        for name, value in losses.items():
            self._loss_metrics[name].update_state(value)
        self._global_step.assign_add(1)
        self._record_non_finite({**losses, GRADIENT_NORM: tf.linalg.global_norm(gradients)})

    def _compute_gradients(
        self, inputs: Mapping[str, tf.Tensor]
    ) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
        """Forward and backward pass of one replica.

        Returns:
            The replica's batch-mean losses, float32 [] per name, and the gradients of
            total / num_replicas (summed over replicas by the optimizer, this gives the
            gradient of the global-batch mean).
        """
        variables = self._model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self._model(inputs[common.IMAGE], training=True)
            # Under mixed precision the losses are computed in float32 (as TFM does).
            outputs = tf.nest.map_structure(_to_float32, outputs)
            per_sample = self._loss(inputs, outputs)
            if set(per_sample) != set(self._loss_names):
                raise ValueError(
                    f"the loss returned {sorted(per_sample)} but published "
                    f"{sorted(self._loss_names)}"
                )
            losses = {name: tf.reduce_mean(per_sample[name]) for name in self._loss_names}
            objective = losses[common.LOSS_TOTAL] / self._strategy.num_replicas_in_sync
            if isinstance(self._optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
                objective = self._optimizer.get_scaled_loss(objective)
        gradients = tape.gradient(objective, variables)
        if isinstance(self._optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
            gradients = self._optimizer.get_unscaled_gradients(gradients)
        return losses, gradients

    def _record_non_finite(self, values: Mapping[str, tf.Tensor]) -> None:
        """Remembers the first step at which any replica saw a non-finite checked value."""
        flags = tf.stack(
            [
                tf.cast(tf.logical_not(tf.math.is_finite(values[name])), tf.int32)
                for name in self._checked_names
            ]
        )
        context = tf.distribute.get_replica_context()
        flags = context.all_reduce(tf.distribute.ReduceOp.SUM, flags)
        first = tf.logical_and(self._first_non_finite_step < 0, tf.reduce_any(flags > 0))
        self._first_non_finite_step.assign(
            tf.where(first, self._global_step.read_value(), self._first_non_finite_step)
        )
        self._non_finite_terms.assign(tf.where(first, flags, self._non_finite_terms))


def _to_float32(value):
    if isinstance(value, tf.Tensor) and value.dtype.is_floating:
        return tf.cast(value, tf.float32)
    return value
