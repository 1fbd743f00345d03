"""Flags and the run loop shared by the dataset converter CLIs (kitti_step_cli, vipseg_cli).

Importing this module defines the flags every converter takes; each dataset's CLI adds
the flag of its dataset root and calls `convert_from_flags`.
"""

from collections.abc import Callable

from absl import app, flags, logging

from deeplab_video.data import tfrecord
from deeplab_video.data.converters import common

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    None,
    "Directory of the TFRecord shards (created if needed).",
    required=True,
    allow_override=True,
)
_SPLITS = flags.DEFINE_list(
    "splits",
    ["train", "val"],
    "Splits to convert. 'test' has no labels: its records get all-void labels.",
)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 10, "Most shards per split; a sequence never spans two shards.", lower_bound=1
)
_IMAGE_FORMAT = flags.DEFINE_enum(
    "image_format",
    None,
    list(tfrecord.IMAGE_FORMATS),
    "Format of the stored frames; unset keeps each source file's format.",
)


def convert_from_flags(argv: list[str], convert: Callable[..., dict[str, list[str]]], **kwargs):
    """Runs a dataset's `convert(root, output_dir, splits, num_shards, ...)` with the flags.

    Args:
        argv: the command line left after flag parsing (must hold only the program name).
        convert: the dataset module's convert function.
        **kwargs: its dataset-specific arguments (the root first among them).

    Raises:
        app.UsageError: extra command-line arguments.
        SystemExit: the conversion failed (the error is logged; nothing of the failed
            split is left in the output directory).
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        paths = convert(
            output_dir=_OUTPUT_DIR.value,
            splits=_SPLITS.value,
            num_shards=_NUM_SHARDS.value,
            image_format=_IMAGE_FORMAT.value,
            **kwargs,
        )
    except common.ConversionError as e:
        logging.error("Conversion failed: %s", e)
        raise SystemExit(1) from e
    for split, shards in paths.items():
        logging.info("%s: %d shards, e.g. %s", split, len(shards), shards[0])
