"""Checkpoint layout, partial initialisation from another checkpoint, and resuming.

A training checkpoint is `tf.train.Checkpoint(**model.checkpoint_items, optimizer=...,
global_step=...)`: the model's components under their names (backbone, pixel_decoder,
transformer_decoder, prediction_head, semantic_head), the optimizer (its iteration counter
drives the learning-rate schedule, its slots the moments) and the global step. Restoring
it resumes training exactly where it stopped.

`model_options.initial_checkpoint` initialises a new run instead: every model variable
whose checkpoint key (its object path, e.g. `backbone/_stem/_conv/kernel`) and shape
match a tensor of that checkpoint is copied, the rest keeps its fresh initialisation.
`restore_mode` "backbone" limits this to the backbone. The restored and skipped
variables are logged and returned.

DeepLab2 kMaX-DeepLab checkpoints (COCO / Cityscapes; `kmax_resnet50`,
`kmax_axial_resnet50`, `kmax_convnext_{tiny,small,base,large}`) initialise the backbone and
the pixel decoder: our layer names equal DeepLab2's below the top-level item, and the one
item named differently is listed in DEEPLAB2_ITEM_NAMES. DeepLab2's transformer decoder
and heads (single-image kMaX, other widths and names) are reported as missing.
"""

import collections
import dataclasses
from collections.abc import Mapping

import tensorflow as tf
from absl import logging

# Suffix TensorFlow appends to the object path of a variable's value in a checkpoint.
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Our checkpoint item -> the name DeepLab2's kMaX-DeepLab gives the same component
# (DeepLab2 model/kmax_deeplab.py checkpoint_items). The one name-mapping table.
DEEPLAB2_ITEM_NAMES = {"backbone": "encoder"}


@dataclasses.dataclass(frozen=True)
class RestoreReport:
    """What `restore_partially` did.

    Attributes:
        restored: checkpoint keys of the variables copied from the checkpoint.
        missing: keys of model variables the checkpoint does not hold.
        mismatched: (key, model shape, checkpoint shape) of variables left alone because
            the shapes differ (e.g. a class head for another number of classes).
    """

    restored: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]


def variable_keys(items: Mapping[str, tf.Module]) -> dict[str, tf.Variable]:
    """The checkpoint key of every variable reachable from `items`.

    Keys are those `tf.train.Checkpoint(**items)` writes: the shortest (breadth-first)
    object path, names escaped as TensorFlow escapes them.

    Args:
        items: named trackables, e.g. `model.checkpoint_items`.

    Returns:
        {key without the '/.ATTRIBUTES/VARIABLE_VALUE' suffix: variable}.
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


def restore_partially(
    checkpoint_path: str, items: Mapping[str, tf.Module], restore_mode: str = "all"
) -> RestoreReport:
    """Copies every matching variable of a checkpoint into `items`.

    Args:
        checkpoint_path: a checkpoint prefix or a directory (its latest checkpoint).
        items: the model's `checkpoint_items`.
        restore_mode: "all" (every item) or "backbone" (the "backbone" item only).

    Returns:
        The restored, missing and shape-mismatched variables (also logged).

    Raises:
        FileNotFoundError: no checkpoint at `checkpoint_path`.
        ValueError: unknown restore_mode, or "backbone" with no backbone item.
    """
    if restore_mode == "all":
        selected = dict(items)
    elif restore_mode == "backbone":
        if "backbone" not in items:
            raise ValueError(f"restore_mode 'backbone' but the model has only {sorted(items)}")
        selected = {"backbone": items["backbone"]}
    else:
        raise ValueError(f"unknown restore_mode '{restore_mode}'; expected all or backbone")
    path = tf.train.latest_checkpoint(checkpoint_path) or checkpoint_path
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise FileNotFoundError(
            f"cannot read initial_checkpoint '{checkpoint_path}': {e}; fix "
            "model_options.initial_checkpoint"
        ) from e
    shapes = reader.get_variable_to_shape_map()
    restored, missing, mismatched = [], [], []
    for key, variable in sorted(variable_keys(selected).items()):
        source = _checkpoint_key(key, shapes)
        stored = shapes.get(source + _VALUE_SUFFIX)
        model_shape = tuple(variable.shape.as_list())
        if stored is None:
            missing.append(key)
        elif tuple(stored) != model_shape:
            mismatched.append((key, model_shape, tuple(stored)))
        else:
            variable.assign(reader.get_tensor(source + _VALUE_SUFFIX))
            restored.append(key)
    report = RestoreReport(tuple(restored), tuple(missing), tuple(mismatched))
    _log_report(path, restore_mode, report)
    return report


def _checkpoint_key(key: str, shapes: Mapping[str, list[int]]) -> str:
    """The checkpoint key holding our variable `key`: itself, or its DeepLab2 name."""
    if key + _VALUE_SUFFIX in shapes:
        return key
    item, _, rest = key.partition("/")
    alias = DEEPLAB2_ITEM_NAMES.get(item)
    if alias and f"{alias}/{rest}{_VALUE_SUFFIX}" in shapes:
        return f"{alias}/{rest}"
    return key


def _log_report(path: str, restore_mode: str, report: RestoreReport) -> None:
    logging.info(
        "Initial checkpoint %s (restore_mode=%s): restored %d variables, %d not in the "
        "checkpoint, %d with another shape.",
        path,
        restore_mode,
        len(report.restored),
        len(report.missing),
        len(report.mismatched),
    )
    for key in report.restored:
        logging.info("  restored: %s", key)
    for key in report.missing:
        logging.warning("  not restored (absent from the checkpoint): %s", key)
    for key, model_shape, stored_shape in report.mismatched:
        logging.warning(
            "  not restored (shape %s in the model, %s in the checkpoint): %s",
            model_shape,
            stored_shape,
            key,
        )


def _escape(name: str) -> str:
    """Escapes one object name as TensorFlow's checkpoint keys do ('.' -> '..', '/' -> '.S')."""
    return name.replace(".", "..").replace("/", ".S")
