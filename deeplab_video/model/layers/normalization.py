"""Normalization layers: the batch-norm factory every block receives, and layer norm.

Whether batch normalization is synchronised across replicas is decided once, at the top
(`from_backbone_options`), and the resulting `BatchNormFactory` is passed down to every
block, as DeepLab2 passes its `bn_layer`. The factory is serialisable, so layers that hold
one keep a JSON-friendly `get_config`.
"""

from typing import Any

import tf_keras

from deeplab_video.protos import model_pb2

# Epsilon of every LayerNormalization (ConvNeXt and the kMaX pixel decoder's input norms).
LAYER_NORM_EPSILON = 1e-6


class BatchNormFactory:
    """Makes batch-normalization layers with fixed momentum, epsilon and sync mode.

    Calling the factory returns a new `tf_keras.layers.BatchNormalization`; keyword
    arguments (`axis`, `name`, `gamma_initializer`, ...) are passed to the layer.
    """

    def __init__(self, synchronized: bool = False, momentum: float = 0.99, epsilon: float = 1e-3):
        """Initializes the factory.

        Args:
            synchronized: whether batch statistics are all-reduced across replicas.
            momentum: momentum of the moving mean and variance.
            epsilon: added to the variance before the square root.

        Raises:
            ValueError: momentum is outside [0, 1) or epsilon is not positive.
        """
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"batch norm momentum must be in [0, 1), got {momentum}")
        if epsilon <= 0.0:
            raise ValueError(f"batch norm epsilon must be positive, got {epsilon}")
        self.synchronized = bool(synchronized)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def __call__(self, **kwargs: Any) -> tf_keras.layers.BatchNormalization:
        return tf_keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            synchronized=self.synchronized,
            **kwargs,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "synchronized": self.synchronized,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BatchNormFactory":
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchNormFactory) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"BatchNormFactory({self.get_config()})"


def from_backbone_options(options: model_pb2.BackboneOptions) -> BatchNormFactory:
    """Returns the batch-norm factory that `options` asks for (sync, momentum, epsilon)."""
    return BatchNormFactory(
        synchronized=options.use_sync_batchnorm,
        momentum=options.batchnorm_momentum,
        epsilon=options.batchnorm_epsilon,
    )


def default_factory() -> BatchNormFactory:
    """Returns the factory of a default `BackboneOptions` (DeepLab2 kMaX: sync, 0.99, 1e-3)."""
    return from_backbone_options(model_pb2.BackboneOptions())


def resolve(norm_layer: BatchNormFactory | dict[str, Any] | None) -> BatchNormFactory:
    """Turns a factory, its config (from `get_config`) or None (the default) into a factory."""
    if norm_layer is None:
        return default_factory()
    if isinstance(norm_layer, dict):
        return BatchNormFactory.from_config(norm_layer)
    if not isinstance(norm_layer, BatchNormFactory):
        raise TypeError(
            f"norm_layer must be a normalization.BatchNormFactory, its config dict or None; "
            f"got {type(norm_layer).__name__}"
        )
    return norm_layer


def layer_norm(name: str) -> tf_keras.layers.LayerNormalization:
    """Returns a LayerNormalization over the last axis with LAYER_NORM_EPSILON."""
    return tf_keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)
