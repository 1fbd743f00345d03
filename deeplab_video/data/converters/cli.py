"""What the dataset converter CLIs (kitti_step_cli, vipseg_cli, ...) share: flags and run.

Each converter CLI's `define_flags` defines its dataset-root flag, calls `define_flags`
here for the flags every converter takes and adopts them as its own (so its --help lists
them); its `main` calls `convert_from_flags`. Importing this module defines no flag.
"""

from collections.abc import Callable

from absl import app, flags, logging

from deeplab_video.data import tfrecord

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines --output_dir, --splits, --num_shards and --image_format."""
    flags.DEFINE_string(
        "output_dir", None, "Directory of the TFRecord shards (created if needed).", required=True
    )
    flags.DEFINE_list(
        "splits",
        ["train", "val"],
        "Splits to convert. 'test' has no labels: its records get all-void labels.",
    )
    flags.DEFINE_integer(
        "num_shards",
        10,
        "Most shards per split; a sequence never spans two shards.",
        lower_bound=1,
    )
    flags.DEFINE_enum(
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
        common.ConversionError: the conversion failed (nothing of the failed split is left
            in the output directory).
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    paths = convert(
        output_dir=FLAGS.output_dir,
        splits=FLAGS.splits,
        num_shards=FLAGS.num_shards,
        image_format=FLAGS.image_format,
        **kwargs,
    )
    for split, shards in paths.items():
        logging.info("%s: %d shards, e.g. %s", split, len(shards), shards[0])
