"""The optimizer and learning-rate schedule of training, built from `SolverOptions`.

As kMaX-DeepLab (DeepLab2) and the official Video-kMaX trainer do:

- AdamW with decoupled weight decay (`var -= lr * weight_decay * var`), applied only to
  convolution and dense kernels: normalisation parameters, biases and the learned query
  embeddings (cluster centres) are never decayed (DeepLab2 decays `.*(kernel|weight):0$`
  only; Video-kMaX sets WEIGHT_DECAY_NORM and WEIGHT_DECAY_EMBED to 0);
- the backbone's learning rate (and hence its weight decay step) is the base rate times
  `backbone_learning_rate_multiplier`;
- a linear warm-up from 0 to `base_learning_rate` over `warmup_steps`, then polynomial
  decay to `poly_end_learning_rate` at `training_number_of_steps`;
- optional global-norm gradient clipping of the all-reduced gradients;
- "adam" is the same without weight decay; "sgd" uses `sgd_momentum` (no weight decay);
- under the "mixed_float16" policy the optimizer is wrapped in a dynamic
  `LossScaleOptimizer`; "mixed_bfloat16" (TPU) needs no loss scaling.

The schedule is a function of the optimizer's `iterations`, which is checkpointed, so a
resumed run continues the schedule exactly where it stopped.
"""

import re
from collections.abc import Sequence

import tensorflow as tf
import tf_keras

from deeplab_video.protos import config_pb2

# Variables whose last name component matches are weight-decayed; nothing else is.
DECAYED_VARIABLE_PATTERN = re.compile(r"kernel(:\d+)?$")


class WarmupPolyDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to the base rate, then polynomial decay to the end rate.

    lr(step) = base * step / warmup_steps                              for step < warmup_steps
    lr(step) = (base - end) * (1 - p) ** power + end,
               p = min(1, (step - warmup_steps) / (total_steps - warmup_steps))  otherwise.
    """

    def __init__(
        self,
        base_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        power: float,
        end_learning_rate: float = 0.0,
    ):
        """Initialises the schedule.

        Args:
            base_learning_rate: the peak rate, reached at the end of warm-up.
            warmup_steps: steps of linear warm-up (0 disables warm-up).
            total_steps: the step at which the rate reaches end_learning_rate.
            power: exponent of the polynomial decay.
            end_learning_rate: the rate from total_steps on.

        Raises:
            ValueError: warmup_steps is negative or not below total_steps.
        """
        super().__init__()
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must be in [0, total_steps={total_steps})"
            )
        self.base_learning_rate = base_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.power = power
        self.end_learning_rate = end_learning_rate

    def __call__(self, step) -> tf.Tensor:
        """float32 [] learning rate at `step` (int or int64 tensor)."""
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        warmup_rate = self.base_learning_rate * step / max(warmup, 1.0)
        progress = tf.clip_by_value((step - warmup) / (self.total_steps - warmup), 0.0, 1.0)
        decay_range = self.base_learning_rate - self.end_learning_rate
        decayed_rate = decay_range * (1.0 - progress) ** self.power + self.end_learning_rate
        return tf.where(step < warmup, warmup_rate, decayed_rate)

    def get_config(self) -> dict:
        return {
            "base_learning_rate": self.base_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
        }


class _ParameterGroups:
    """Mixin for tf_keras optimizers: per-variable learning-rate multipliers and decay.

    tf_keras optimizers read `self.learning_rate` inside `update_step`; while one
    variable is updated, this mixin scales that rate by the variable's multiplier and
    applies decoupled weight decay with the same scaled rate first (as the stock
    optimizers do, before the gradient step).
    """

    _active_multiplier = 1.0

    def set_parameter_groups(
        self,
        schedule: tf_keras.optimizers.schedules.LearningRateSchedule,
        multipliers: dict[str, float],
        decayed: set[str],
        weight_decay: float,
    ) -> None:
        """Sets the groups; call once, before the first `apply_gradients`.

        Args:
            schedule: the base learning-rate schedule (kept for logging).
            multipliers: learning-rate multiplier per variable key (`_var_key`); others 1.
            decayed: keys of the variables that get decoupled weight decay.
            weight_decay: the decay rate (0 disables decay).
        """
        self.learning_rate_schedule = schedule
        self._multipliers = self._no_dependency(multipliers)
        self._decayed = self._no_dependency(frozenset(decayed))
        self._decoupled_weight_decay = weight_decay

    @property
    def learning_rate(self):
        rate = super().learning_rate
        return rate if self._active_multiplier == 1.0 else rate * self._active_multiplier

    @learning_rate.setter
    def learning_rate(self, value):
        tf_keras.optimizers.Optimizer.learning_rate.fset(self, value)

    def update_step(self, gradient, variable):
        key = self._var_key(variable)
        self._active_multiplier = self._multipliers.get(key, 1.0)
        try:
            if self._decoupled_weight_decay and key in self._decayed:
                rate = tf.cast(self.learning_rate, variable.dtype)
                variable.assign_sub(variable * rate * self._decoupled_weight_decay)
            return super().update_step(gradient, variable)
        finally:
            self._active_multiplier = 1.0


class GroupedAdam(_ParameterGroups, tf_keras.optimizers.Adam):
    """Adam / AdamW with per-variable learning-rate multipliers and decay mask."""


class GroupedSGD(_ParameterGroups, tf_keras.optimizers.SGD):
    """SGD with momentum and per-variable learning-rate multipliers."""


def build_learning_rate_schedule(solver: config_pb2.SolverOptions) -> WarmupPolyDecay:
    """The warm-up + poly schedule of `solver` (base rate, before any multiplier)."""
    return WarmupPolyDecay(
        base_learning_rate=solver.base_learning_rate,
        warmup_steps=solver.warmup_steps,
        total_steps=solver.training_number_of_steps,
        power=solver.poly_learning_power,
        end_learning_rate=solver.poly_end_learning_rate,
    )


def is_weight_decayed(variable: tf.Variable) -> bool:
    """Whether AdamW decays `variable` (convolution and dense kernels only)."""
    return DECAYED_VARIABLE_PATTERN.search(variable.name) is not None


def build_optimizer(
    solver: config_pb2.SolverOptions,
    trainable_variables: Sequence[tf.Variable],
    backbone_variables: Sequence[tf.Variable] = (),
    mixed_precision: str = "float32",
) -> tf_keras.optimizers.Optimizer:
    """Builds the optimizer of a training run.

    Call it inside the strategy scope, after the model is built.

    Args:
        solver: `trainer_options.solver_options`.
        trainable_variables: every variable the optimizer updates (decided here which are
            decayed, by name).
        backbone_variables: the subset that gets `backbone_learning_rate_multiplier`.
        mixed_precision: `trainer_options.mixed_precision`.

    Returns:
        A `GroupedAdam` or `GroupedSGD`, wrapped in a `LossScaleOptimizer` under
        mixed_float16. Its `learning_rate_schedule` attribute (on the inner optimizer)
        is the base schedule.

    Raises:
        ValueError: unknown optimizer name.
    """
    schedule = build_learning_rate_schedule(solver)
    clip = solver.gradient_clip_norm if solver.gradient_clip_norm > 0 else None
    if solver.optimizer in ("adamw", "adam"):
        optimizer = GroupedAdam(
            learning_rate=schedule,
            beta_1=solver.adam_beta_1,
            beta_2=solver.adam_beta_2,
            epsilon=solver.adam_epsilon,
            global_clipnorm=clip,
        )
        weight_decay = solver.weight_decay if solver.optimizer == "adamw" else 0.0
    elif solver.optimizer == "sgd":
        optimizer = GroupedSGD(
            learning_rate=schedule, momentum=solver.sgd_momentum, global_clipnorm=clip
        )
        weight_decay = 0.0
    else:
        raise ValueError(
            f"unknown optimizer '{solver.optimizer}'; expected adamw, adam or sgd "
            "(trainer_options.solver_options.optimizer)"
        )
    multipliers = {
        optimizer._var_key(v): solver.backbone_learning_rate_multiplier for v in backbone_variables
    }
    decayed = {optimizer._var_key(v) for v in trainable_variables if is_weight_decayed(v)}
    optimizer.set_parameter_groups(schedule, multipliers, decayed, weight_decay)
    if mixed_precision == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer: tf_keras.optimizers.Optimizer) -> tf_keras.optimizers.Optimizer:
    """The optimizer under a LossScaleOptimizer wrapper (or `optimizer` itself)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def current_learning_rate(optimizer: tf_keras.optimizers.Optimizer) -> tf.Tensor:
    """float32 [] base learning rate of the next step (schedule at `iterations`)."""
    inner = inner_optimizer(optimizer)
    return inner.learning_rate_schedule(inner.iterations)
