"""What a checkpoint format provides to `pretrained.load_pretrained`: tensors and a mapping.

A source of weights is a `TensorSource`: named numpy tensors with their shapes (a
TensorFlow checkpoint, a PyTorch state dict, ...). A format's mapping says, for each of
our variables (by checkpoint key, e.g. `backbone/_stem/_conv/kernel`), which source tensor
fills it and how the tensor is rearranged first: an `Assignment`. Mapping tables are lists
of `Rule`s, regular expressions over our keys, applied by `apply_rules`.

    rules = [Rule(r"^backbone/(.*)$", r"encoder/\\1", squeeze_to)]
    assignments = apply_rules(model_shapes, rules)   # {our key: Assignment}
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Protocol

import numpy as np

Shape = tuple[int, ...]
# Rearranges a source tensor into the layout of our variable.
Transform = Callable[[np.ndarray], np.ndarray]
# Makes the Transform for a variable of the given (model) shape.
TransformFactory = Callable[[Shape], Transform]


class TensorSource(Protocol):
    """Named tensors of one checkpoint file.

    Attributes:
        path: the file (or checkpoint prefix) they come from.
        shapes: {tensor name: shape} of the weights (no optimizer state or counters).
    """

    path: str
    shapes: Mapping[str, Shape]

    def read(self, name: str) -> np.ndarray:
        """The tensor `name` (a key of `shapes`)."""


class ArraySource:
    """A `TensorSource` over arrays already in memory (e.g. a PyTorch state dict)."""

    def __init__(self, path: str, arrays: Mapping[str, np.ndarray]):
        self.path = path
        self._arrays = dict(arrays)
        self.shapes = {name: tuple(np.shape(value)) for name, value in self._arrays.items()}

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self._arrays[name])


class Assignment(NamedTuple):
    """Where one of our variables comes from.

    Attributes:
        source_key: the source tensor's name.
        transform: rearranges the source tensor into our layout (None: taken as is). A
            transform that cannot apply returns its input unchanged; the loader then
            reports the variable as mismatched.
    """

    source_key: str
    transform: Transform | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """One line of a mapping table.

    Attributes:
        pattern: regular expression matched (re.fullmatch) against our checkpoint key.
        replacement: the source key, as an `re.Match.expand` template (\\1, \\g<name>).
        transform: makes the Transform from our variable's shape (None: as is).
    """

    pattern: str
    replacement: str
    transform: TransformFactory | None = None


def apply_rules(model_shapes: Mapping[str, Shape], rules: Iterable[Rule]) -> dict[str, Assignment]:
    """Maps every key of `model_shapes` through the first rule that matches it.

    Args:
        model_shapes: {our checkpoint key: shape}.
        rules: the mapping table, tried in order.

    Returns:
        {our key: Assignment} for every key some rule matches; other keys are left out
        (the loader reports them missing).
    """
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    assignments = {}
    for key, shape in model_shapes.items():
        for pattern, rule in compiled:
            match = pattern.fullmatch(key)
            if match:
                transform = rule.transform(tuple(shape)) if rule.transform else None
                assignments[key] = Assignment(match.expand(rule.replacement), transform)
                break
    return assignments


def squeeze_to(shape: Shape) -> Transform:
    """Inserts or removes size-1 axes, e.g. a Conv1D kernel [1, C, D] -> [1, 1, C, D].

    Applies only when both shapes hold the same sizes other than 1, in the same order.
    """
    target = tuple(shape)

    def transform(value: np.ndarray) -> np.ndarray:
        if _non_singleton(value.shape) != _non_singleton(target):
            return value
        return value.reshape(target)

    return transform


def flatten_to(shape: Shape) -> Transform:
    """Reshapes to `shape` when the sizes agree, e.g. batch-norm [1, 8, 1, 32] -> [256].

    Only for tensors whose axes are merged in order (row-major) into ours.
    """
    target = tuple(shape)

    def transform(value: np.ndarray) -> np.ndarray:
        if value.size != int(np.prod(target)):
            return value
        return value.reshape(target)

    return transform


def take_last_axis(indices: Iterable[int], then: TransformFactory) -> TransformFactory:
    """Reorders the last axis (our channel c takes source channel indices[c]), then `then`.

    Applies only when the source's last axis has len(indices) entries.
    """
    order = np.asarray(list(indices))

    def factory(shape: Shape) -> Transform:
        finish = then(shape)

        def transform(value: np.ndarray) -> np.ndarray:
            if value.shape[-1] != len(order):
                return value
            return finish(np.take(value, order, axis=-1))

        return transform

    return factory


def _non_singleton(shape: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(size) for size in shape if size != 1)
