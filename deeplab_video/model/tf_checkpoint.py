"""TensorFlow object-based checkpoints: finding them, their keys, and reading their weights.

Both our checkpoints and DeepLab2's are `tf.train.Checkpoint(**checkpoint_items, ...)`
files: every variable is stored under its object path from the root (e.g.
`backbone/_stem/_conv/kernel`) plus the suffix `/.ATTRIBUTES/VARIABLE_VALUE`. A
`CheckpointSource` lists the weights of such a checkpoint under their object paths, leaving
out what is not a model weight (optimizer state, step counters).
"""

import collections
import re
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

# Suffix TensorFlow appends to the object path of a variable's value.
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Marks optimizer slot variables (e.g. Adam moments) stored under a weight's path.
_SLOT_MARKER = "/.OPTIMIZER_SLOT/"
# Top-level checkpoint items that hold training state, not weights (ours and DeepLab2's).
TRAINING_STATE_ITEMS = ("optimizer", "backbone_optimizer", "global_step", "save_counter")


def resolve_checkpoint(path: str) -> str:
    """The checkpoint prefix for a prefix (e.g. model_dir/ckpt-600) or a folder.

    A folder gives the latest checkpoint its `checkpoint` state file names or, without
    one (e.g. an extracted DeepLab2 download), its `<prefix>.index` of the highest step.

    Raises:
        FileNotFoundError: the folder holds no checkpoint, or the prefix does not exist.
    """
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            prefixes = [name[: -len(".index")] for name in tf.io.gfile.glob(f"{path}/*.index")]
            if not prefixes:
                raise FileNotFoundError(f"No checkpoint found in directory {path}.")
            latest = max(prefixes, key=_step)
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(
            f"No checkpoint at {path} (expected {path}.index); give a checkpoint prefix "
            "such as model_dir/ckpt-600, or a model_dir."
        )
    return path


def is_checkpoint(path: str) -> bool:
    """Whether `path` is a TensorFlow checkpoint prefix or a folder holding checkpoints."""
    try:
        resolve_checkpoint(path)
    except FileNotFoundError:
        return False
    return True


class CheckpointSource:
    """The weights of a TensorFlow checkpoint, by object path (a `TensorSource`).

    Attributes:
        path: the checkpoint prefix read.
        shapes: {object path without VALUE_SUFFIX: shape} of every stored variable that is
            not training state (TRAINING_STATE_ITEMS, optimizer slots).
    """

    def __init__(self, path: str):
        """Opens the checkpoint.

        Args:
            path: a checkpoint prefix or a folder (its latest checkpoint).

        Raises:
            FileNotFoundError: no checkpoint at `path`, or it cannot be read.
        """
        self.path = resolve_checkpoint(path)
        try:
            self._reader = tf.train.load_checkpoint(self.path)
        except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as error:
            raise FileNotFoundError(f"cannot read checkpoint {self.path}: {error}") from error
        self.shapes = {
            key[: -len(VALUE_SUFFIX)]: tuple(shape)
            for key, shape in self._reader.get_variable_to_shape_map().items()
            if _is_weight(key)
        }

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self._reader.get_tensor(name + VALUE_SUFFIX))


def variable_keys(items: Mapping[str, tf.Module]) -> dict[str, tf.Variable]:
    """The checkpoint key of every variable reachable from `items`.

    Keys are those `tf.train.Checkpoint(**items)` writes: the shortest (breadth-first)
    object path, names escaped as TensorFlow escapes them.

    Args:
        items: named trackables, e.g. `model.checkpoint_items`.

    Returns:
        {key without VALUE_SUFFIX: variable}.
    """
    root = tf.train.Checkpoint(**items)
    paths = {id(root): ""}
    queue = collections.deque([root])
    keys: dict[str, tf.Variable] = {}
    while queue:
        node = queue.popleft()
        for name, child in tf.train.TrackableView.children(node).items():
            if id(child) in paths:
                continue
            path = f"{paths[id(node)]}/{_escape(name)}".lstrip("/")
            paths[id(child)] = path
            if isinstance(child, tf.Variable):
                keys[path] = child
            else:
                queue.append(child)
    return keys


def _step(prefix: str) -> tuple[int, str]:
    """Sort key of a checkpoint prefix: its trailing step number (ckpt-150000), then name."""
    digits = re.search(r"(\d+)$", prefix)
    return (int(digits[1]) if digits else -1, prefix)


def _is_weight(key: str) -> bool:
    if not key.endswith(VALUE_SUFFIX) or _SLOT_MARKER in key:
        return False
    return key.split("/", 1)[0] not in TRAINING_STATE_ITEMS


def _escape(name: str) -> str:
    """Escapes one object name as TensorFlow's checkpoint keys do ('.' -> '..', '/' -> '.S')."""
    return name.replace(".", "..").replace("/", ".S")
