"""Loads published or our own weights into a Video-kMaX model, whatever their format.

    report = load_pretrained(model, "/path/to/checkpoint")   # the format is detected
    report.restored, report.missing, report.mismatched, report.unused

Formats (FORMATS, tried in order): our own checkpoints (`tf.train.Checkpoint` of
`model.checkpoint_items`, e.g. a model_dir or model_dir/ckpt-600), DeepLab2 kMaX-DeepLab
checkpoints (`deeplab2_mapping`) and the official PyTorch Video-kMaX files (detectron2's
`model_final.pth` or `.pkl`, read without torch by `torch_checkpoint`; `official_mapping`).
A format is one reader (file -> named tensors, a `weight_mapping.TensorSource`) plus one
mapping table (our variable -> source tensor and layout, `weight_mapping.Assignment`);
adding a format adds one `SourceFormat` here.

Every variable of the model ends in exactly one of `restored`, `missing` (no source
tensor) or `mismatched` (the source tensor has another shape, e.g. a class head for
another dataset); source tensors that filled nothing are `unused`. The outcome is logged
as one short table per checkpoint item. Callers that need every weight (inference,
export) call `report.check_fits(...)`, which raises one `CheckpointMismatchError` naming
the checkpoint, the model and the first differing variables.
"""

import collections
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_video.model import (
    deeplab2_mapping,
    official_mapping,
    tf_checkpoint,
    torch_checkpoint,
    weight_mapping,
)
from deeplab_video.protos import model_pb2

# How many variable names an error message or a log line lists.
_NAMES_SHOWN = 5
# Our checkpoint-key fragment of the class-logit layers (their width is num_classes + 1).
CLASS_HEAD_KEY = "_transformer_class_head/"


class UnknownCheckpointFormatError(ValueError):
    """No registered format reads the file."""


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model (variables missing or shaped differently)."""


@dataclasses.dataclass(frozen=True)
class SourceFormat:
    """One checkpoint format: a reader and a mapping table.

    Attributes:
        name: short name, in reports.
        description: what the files are, for messages.
        can_read: whether the reader applies to a path (cheap: extension, index file).
        open: the reader: path -> TensorSource (raises FileNotFoundError, ValueError).
        recognises: whether the opened tensors' names are this format's.
        assign: (our shapes by key, source shapes by name) -> {our key: Assignment}.
        unused_reason: why a source tensor filled no variable (None: not explained).
    """

    name: str
    description: str
    can_read: Callable[[str], bool]
    open: Callable[[str], weight_mapping.TensorSource]
    recognises: Callable[[Mapping[str, weight_mapping.Shape]], bool]
    assign: Callable[
        [Mapping[str, weight_mapping.Shape], Mapping[str, weight_mapping.Shape]],
        dict[str, weight_mapping.Assignment],
    ]
    unused_reason: Callable[[str], str] | None = None


def _same_names(
    model_shapes: Mapping[str, weight_mapping.Shape],
    source_shapes: Mapping[str, weight_mapping.Shape],
) -> dict[str, weight_mapping.Assignment]:
    """Our own checkpoints: every variable under its own key."""
    return {key: weight_mapping.Assignment(key) for key in model_shapes if key in source_shapes}


def _ours(shapes: Mapping[str, weight_mapping.Shape]) -> bool:
    return not deeplab2_mapping.recognises(shapes)


def _open_torch_file(path: str) -> weight_mapping.ArraySource:
    return weight_mapping.ArraySource(path, torch_checkpoint.read_state_dict(path))


FORMATS = (
    SourceFormat(
        name="deeplab2",
        description="DeepLab2 kMaX-DeepLab checkpoint",
        can_read=tf_checkpoint.is_checkpoint,
        open=tf_checkpoint.CheckpointSource,
        recognises=deeplab2_mapping.recognises,
        assign=deeplab2_mapping.assign,
        unused_reason=deeplab2_mapping.unused_reason,
    ),
    SourceFormat(
        name="deeplab_video",
        description="deeplab-video checkpoint",
        can_read=tf_checkpoint.is_checkpoint,
        open=tf_checkpoint.CheckpointSource,
        recognises=_ours,
        assign=_same_names,
    ),
    SourceFormat(
        name="official_pytorch",
        description="official PyTorch Video-kMaX file (detectron2 .pth / .pkl)",
        can_read=torch_checkpoint.is_torch_file,
        open=_open_torch_file,
        recognises=official_mapping.recognises,
        assign=official_mapping.assign,
        unused_reason=official_mapping.unused_reason,
    ),
)


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A variable left unset because its source tensor has another shape."""

    key: str
    model_shape: weight_mapping.Shape
    source_key: str
    source_shape: weight_mapping.Shape

    def __str__(self) -> str:
        return (
            f"{self.key} (model {list(self.model_shape)}, checkpoint "
            f"{list(self.source_shape)} at {self.source_key})"
        )


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What `load_pretrained` did.

    Attributes:
        source: the file or checkpoint prefix read.
        source_format: the detected format's name.
        restored: our checkpoint keys of the variables filled.
        missing: keys of variables the source has no tensor for.
        mismatched: variables whose source tensor has another shape.
        unused: source tensors that filled no variable.
        unused_reasons: {unused source tensor: why}, where the format explains it.
    """

    source: str
    source_format: str
    restored: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[Mismatch, ...]
    unused: tuple[str, ...]
    unused_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-serialisable values."""
        return {
            "source": self.source,
            "source_format": self.source_format,
            "restored": list(self.restored),
            "missing": list(self.missing),
            "mismatched": [
                {
                    "key": m.key,
                    "model_shape": list(m.model_shape),
                    "source_key": m.source_key,
                    "source_shape": list(m.source_shape),
                }
                for m in self.mismatched
            ],
            "unused": list(self.unused),
            "unused_reasons": dict(self.unused_reasons),
        }

    def table(self) -> str:
        """Counts per checkpoint item (first key component), one line each."""
        items: dict[str, list[int]] = {}
        for column, keys in enumerate(
            (self.restored, self.missing, [m.key for m in self.mismatched])
        ):
            for key in keys:
                items.setdefault(key.split("/", 1)[0], [0, 0, 0])[column] += 1
        totals = [len(self.restored), len(self.missing), len(self.mismatched)]
        width = max([len(name) for name in items] + [5])
        lines = [f"  {'item':<{width}}  restored  missing  mismatched"]
        for name, counts in sorted(items.items()) + [("total", totals)]:
            lines.append(f"  {name:<{width}}  {counts[0]:>8}  {counts[1]:>7}  {counts[2]:>10}")
        lines.append(f"  source tensors not used: {len(self.unused)}")
        for reason, count in sorted(collections.Counter(self.unused_reasons.values()).items()):
            lines.append(f"    {count:>5}  {reason}")
        return "\n".join(lines)

    def check_fits(self, model_description: str, new_classes: bool = False) -> None:
        """Raises unless the checkpoint filled every variable.

        Args:
            model_description: names the model in the message, e.g. "the model of
                configs/coco/kmax_resnet50.textproto".
            new_classes: initialising for another dataset: class-logit layers may
                differ in shape, and variables may be missing, but some must be restored.

        Raises:
            CheckpointMismatchError: naming the checkpoint, the model and the first
                missing or mismatched variables.
        """
        mismatched = [m for m in self.mismatched if not (new_classes and CLASS_HEAD_KEY in m.key)]
        missing = [] if new_classes else list(self.missing)
        if not mismatched and not missing and self.restored:
            return
        problems = [f"{m} has another shape" for m in mismatched[:_NAMES_SHOWN]]
        problems += [f"{key} is not in the checkpoint" for key in missing[:_NAMES_SHOWN]]
        if not self.restored:
            problems.insert(0, "it fills none of the model's variables")
        raise CheckpointMismatchError(
            f"checkpoint {self.source} ({self.source_format}) does not fit {model_description}: "
            f"{len(missing)} variables missing, {len(mismatched)} with another shape, "
            f"{len(self.restored)} restored; first: {'; '.join(problems)}. Use the config "
            "the checkpoint was trained with (backbone, num_classes, decoder options)."
        )


def open_source(path: str) -> tuple[SourceFormat, weight_mapping.TensorSource]:
    """Detects the format of `path` and opens it.

    Raises:
        FileNotFoundError: nothing at `path`.
        UnknownCheckpointFormatError: no format in FORMATS reads it.
    """
    opened: dict[Callable, weight_mapping.TensorSource] = {}
    readable = False
    for source_format in FORMATS:
        if not source_format.can_read(path):
            continue
        readable = True
        if source_format.open not in opened:
            opened[source_format.open] = source_format.open(path)
        source = opened[source_format.open]
        if source_format.recognises(source.shapes):
            return source_format, source
    if not readable and tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"No checkpoint found in directory {path}.")
    if not readable and not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No checkpoint at {path} (no {path}.index either): give a checkpoint prefix "
            "(model_dir/ckpt-600, DeepLab2's ckpt-150000), a folder of checkpoints, or a "
            ".pth / .pkl file."
        )
    raise UnknownCheckpointFormatError(
        f"{path} is in none of the known checkpoint formats: "
        + ", ".join(f.description for f in FORMATS)
    )


def load_pretrained(model: Any, path: str, items: Sequence[str] | None = None) -> LoadReport:
    """Fills the model's variables from a checkpoint of any supported format.

    Args:
        model: a built Video-kMaX model (or anything with `checkpoint_items`).
        path: checkpoint prefix, folder of checkpoints, or file.
        items: restrict to these checkpoint items (e.g. ("backbone",)); None: all.

    Returns:
        The LoadReport (also logged as a table).

    Raises:
        FileNotFoundError: nothing readable at `path`.
        UnknownCheckpointFormatError: no known format.
        ValueError: `items` names an item the model does not have.
    """
    checkpoint_items = dict(model.checkpoint_items)
    if items is not None:
        unknown = sorted(set(items) - set(checkpoint_items))
        if unknown:
            raise ValueError(f"the model has no items {unknown}; it has {sorted(checkpoint_items)}")
        checkpoint_items = {name: checkpoint_items[name] for name in items}
    variables = tf_checkpoint.variable_keys(checkpoint_items)
    source_format, source = open_source(path)
    model_shapes = {key: tuple(v.shape.as_list()) for key, v in variables.items()}
    assignments = source_format.assign(model_shapes, source.shapes)
    restored, missing, mismatched, used = [], [], [], set()
    for key in sorted(variables):
        assignment = assignments.get(key)
        if assignment is None or assignment.source_key not in source.shapes:
            missing.append(key)
            continue
        value = source.read(assignment.source_key)
        if assignment.transform is not None:
            value = assignment.transform(value)
        if tuple(value.shape) != model_shapes[key]:
            stored = source.shapes[assignment.source_key]
            mismatched.append(Mismatch(key, model_shapes[key], assignment.source_key, stored))
            continue
        variable = variables[key]
        variable.assign(np.asarray(value, variable.dtype.as_numpy_dtype))
        restored.append(key)
        used.add(assignment.source_key)
    unused = tuple(sorted(set(source.shapes) - used))
    reasons = {}
    if source_format.unused_reason is not None:
        reasons = {name: source_format.unused_reason(name) for name in unused}
    report = LoadReport(
        source=source.path,
        source_format=source_format.name,
        restored=tuple(restored),
        missing=tuple(missing),
        mismatched=tuple(mismatched),
        unused=unused,
        unused_reasons=reasons,
    )
    _log(report, source_format.description)
    return report


def load_complete(model: Any, path: str, model_description: str) -> LoadReport:
    """Loads a checkpoint that must fill every variable (inference, export, analysis).

    Args:
        model: a built Video-kMaX model.
        path: checkpoint prefix, folder of checkpoints, or file, of any known format.
        model_description: names the model in errors (see `describe_model`).

    Returns:
        The LoadReport (nothing missing or mismatched).

    Raises:
        FileNotFoundError: nothing readable at `path`.
        UnknownCheckpointFormatError: no known format.
        CheckpointMismatchError: the checkpoint does not fill every variable.
    """
    report = load_pretrained(model, path)
    report.check_fits(model_description)
    return report


def describe_model(options: model_pb2.ModelOptions, config_path: str | None = None) -> str:
    """How errors name a model: its config and the options a checkpoint must match."""
    decoder = options.transformer_decoder
    source = f"the model of {config_path}" if config_path else "the model"
    return (
        f"{source} (backbone {options.backbone.name}, {options.num_classes} classes, "
        f"{decoder.num_queries} queries, {len(options.pixel_decoder.channels) or 4} "
        "pixel-decoder stages)"
    )


def _log(report: LoadReport, description: str) -> None:
    logging.info("Weights from %s (%s):\n%s", report.source, description, report.table())
    if report.missing:
        logging.warning(
            "Not in the checkpoint (kept at initialisation): %s%s",
            ", ".join(report.missing[:_NAMES_SHOWN]),
            _more(len(report.missing)),
        )
    if report.mismatched:
        logging.warning(
            "Other shape in the checkpoint (kept at initialisation): %s%s",
            "; ".join(str(m) for m in report.mismatched[:_NAMES_SHOWN]),
            _more(len(report.mismatched)),
        )


def _more(count: int) -> str:
    return f" and {count - _NAMES_SHOWN} more" if count > _NAMES_SHOWN else ""
