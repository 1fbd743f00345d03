"""Drop path (stochastic depth) and its keep-probability schedules.

Reference: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016. Schedules follow
DeepLab2: the ResNets use `linear_keep_prob` per stage (only for blocks at stride >= 16),
ConvNeXt uses `linspace_keep_probs` over all blocks.
"""

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras


def linear_keep_prob(last_keep_prob: float, stage: int, num_stages: int) -> float:
    """Keep probability of `stage`, decreasing linearly from 1.0 (stage 0) to the last.

    Args:
        last_keep_prob: keep probability of stage `num_stages`.
        stage: index of the stage, 0 .. num_stages.
        num_stages: index of the last stage.

    Returns:
        1 - (1 - last_keep_prob) * stage / num_stages.
    """
    return 1.0 - (1.0 - last_keep_prob) * stage / num_stages


def linspace_keep_probs(last_keep_prob: float, num_blocks: int) -> list[float]:
    """Keep probabilities of `num_blocks` blocks, evenly from 1.0 down to `last_keep_prob`."""
    return [float(p) for p in np.linspace(1.0, last_keep_prob, num_blocks, dtype=np.float32)]


def check_keep_prob(keep_prob: float, what: str) -> None:
    """Raises ValueError unless 0 < keep_prob <= 1."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"{what}: drop path keep probability must be in (0, 1], got {keep_prob}")


@tf_keras.utils.register_keras_serializable(package="deeplab_video")
class DropPath(tf_keras.layers.Layer):
    """Zeroes whole samples of a residual branch with probability 1 - keep_prob.

    Kept samples are scaled by 1 / keep_prob so the expectation is unchanged; at inference
    (or with keep_prob 1) the layer is the identity.
    """

    def __init__(self, keep_prob: float = 1.0, **kwargs: Any):
        """Initializes the layer.

        Args:
            keep_prob: probability of keeping a sample's branch, in (0, 1].
            **kwargs: passed to `tf_keras.layers.Layer` (name, dtype).

        Raises:
            ValueError: keep_prob is outside (0, 1].
        """
        super().__init__(**kwargs)
        check_keep_prob(keep_prob, self.name)
        self._keep_prob = float(keep_prob)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Applies drop path.

        Args:
            inputs: float [batch, ...].
            training: drop only when True.

        Returns:
            float [batch, ...], each sample either zero or inputs / keep_prob.
        """
        if not training or self._keep_prob == 1.0:
            return inputs
        shape = tf.concat([tf.shape(inputs)[:1], tf.ones([inputs.shape.rank - 1], tf.int32)], 0)
        keep = tf.floor(self._keep_prob + tf.random.uniform(shape, dtype=tf.float32))
        scale = tf.cast(keep / self._keep_prob, inputs.dtype)
        return inputs * scale

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(keep_prob=self._keep_prob)
        return config
