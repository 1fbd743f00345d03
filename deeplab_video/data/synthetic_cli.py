r"""Generates the built-in synthetic video panoptic dataset.

Writes train/val TFRecord shards (the schema of deeplab_video.data.tfrecord) and, unless
--nowrite_pngs, KITTI-STEP-style image and label PNGs for the evaluation tools. Nothing is
written when the directory already holds the same dataset. --splits=crowd writes the
crowd split instead (look-alike objects crossing, hidden and reappearing:
deeplab_video.data.synthetic_crowd), into a directory of its own; flags left unset take
each split's own defaults.

    deeplab-video-synthetic --output_dir=datasets/synthetic
    deeplab-video-synthetic --splits=crowd --output_dir=datasets/synthetic_crowd
    python -m deeplab_video.data.synthetic_cli --output_dir=/tmp/synthetic --seed=3
"""

import dataclasses
from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video import entry_point
from deeplab_video.data import synthetic, synthetic_crowd

_DEFAULTS = synthetic.SyntheticConfig()
_CROWD_DEFAULTS = synthetic_crowd.CrowdConfig()
# What --splits may name: the train and val splits (generated together) or the crowd split.
_MAIN_SPLITS = ",".join(synthetic.SPLITS)
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_list(
        "splits",
        list(synthetic.SPLITS),
        f"Splits to generate: '{_MAIN_SPLITS}' or '{synthetic_crowd.SPLIT}' (in a directory "
        "of its own).",
    )
    flags.DEFINE_string("output_dir", None, "Directory of the dataset.", required=True)
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed of the whole dataset.")
    flags.DEFINE_integer(
        "num_train_sequences", _DEFAULTS.num_train_sequences, "Training sequences."
    )
    flags.DEFINE_integer("num_val_sequences", _DEFAULTS.num_val_sequences, "Validation sequences.")
    flags.DEFINE_integer("min_frames", _DEFAULTS.min_frames, "Shortest sequence.")
    flags.DEFINE_integer("max_frames", _DEFAULTS.max_frames, "Longest sequence.")
    flags.DEFINE_integer("height", _DEFAULTS.height, "Frame height in pixels.")
    flags.DEFINE_integer("width", _DEFAULTS.width, "Frame width in pixels.")
    flags.DEFINE_integer(
        "max_objects", _DEFAULTS.max_objects, "Most independent objects per sequence."
    )
    flags.DEFINE_integer(
        "num_train_shards", _DEFAULTS.num_train_shards, "TFRecord shards of the train split."
    )
    flags.DEFINE_integer(
        "num_val_shards", _DEFAULTS.num_val_shards, "TFRecord shards of the val split."
    )
    flags.DEFINE_bool(
        "write_pngs", _DEFAULTS.write_pngs, "Also write KITTI-STEP-style image and label PNGs."
    )
    flags.DEFINE_integer("num_crowd_sequences", _CROWD_DEFAULTS.num_sequences, "Crowd sequences.")
    flags.DEFINE_integer(
        "num_crowd_shards", _CROWD_DEFAULTS.num_shards, "TFRecord shards of the crowd split."
    )
    flags.DEFINE_integer(
        "crowd_objects",
        _CROWD_DEFAULTS.max_objects,
        "Most look-alike objects per crowd sequence.",
    )


# The config field each flag (by name) sets, per split family; other flags do not apply.
_FIELDS = {
    _MAIN_SPLITS: {
        "seed": "seed",
        "num_train_sequences": "num_train_sequences",
        "num_val_sequences": "num_val_sequences",
        "min_frames": "min_frames",
        "max_frames": "max_frames",
        "height": "height",
        "width": "width",
        "max_objects": "max_objects",
        "num_train_shards": "num_train_shards",
        "num_val_shards": "num_val_shards",
        "write_pngs": "write_pngs",
    },
    synthetic_crowd.SPLIT: {
        "seed": "seed",
        "num_crowd_sequences": "num_sequences",
        "min_frames": "min_frames",
        "max_frames": "max_frames",
        "height": "height",
        "width": "width",
        "crowd_objects": "max_objects",
        "num_crowd_shards": "num_shards",
        "write_pngs": "write_pngs",
    },
}


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    splits = ",".join(sorted(FLAGS.splits, key=_split_order))
    if splits not in _FIELDS:
        raise app.UsageError(
            f"--splits={','.join(FLAGS.splits)}: generate either '{_MAIN_SPLITS}' or "
            f"'{synthetic_crowd.SPLIT}'"
        )
    fields = _FIELDS[splits]
    misplaced = {
        name
        for family in _FIELDS.values()
        for name in family
        if FLAGS[name].present and name not in fields
    }
    if misplaced:
        raise app.UsageError(
            f"--{', --'.join(sorted(misplaced))} do not apply to --splits={splits}"
        )
    overrides = {field: FLAGS[name].value for name, field in fields.items() if FLAGS[name].present}
    if splits == synthetic_crowd.SPLIT:
        config = dataclasses.replace(_CROWD_DEFAULTS, **overrides)
        config = dataclasses.replace(
            config, min_objects=min(config.min_objects, config.max_objects)
        )
        try:
            config.validate()
        except ValueError as error:
            raise app.UsageError(str(error)) from error
        path = synthetic_crowd.ensure_crowd_dataset(FLAGS.output_dir, config)
    else:
        config = dataclasses.replace(_DEFAULTS, **overrides)
        path = synthetic.ensure_synthetic_dataset(FLAGS.output_dir, config)
    logging.info("Synthetic dataset (%s) ready in %s", splits, path)


def _split_order(split: str) -> int:
    order = (*synthetic.SPLITS, synthetic_crowd.SPLIT)
    return order.index(split) if split in order else len(order)


def run() -> None:
    """Console-script entry point (deeplab-video-synthetic)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
