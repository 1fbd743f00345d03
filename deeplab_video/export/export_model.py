r"""Exports a Video-kMaX experiment (network, post-processing, tracking) as a SavedModel.

Usage:
  deeplab-video-export --config_file configs/kitti_step/resnet50.textproto \
      --checkpoint /path/to/model_dir --output_dir /path/to/export
  python -m deeplab_video.export.export_model ...

--checkpoint takes a checkpoint prefix (model_dir/ckpt-600) or a model_dir (its latest
checkpoint); without it the export holds freshly initialised weights. See the README's
serving section for the signatures.
"""

from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video import config, entry_point
from deeplab_video.export import export_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string("config_file", None, "Experiment textproto.", required=True)
    flags.DEFINE_string(
        "checkpoint", None, "Checkpoint prefix or model_dir (latest checkpoint); default: none."
    )
    flags.DEFINE_string(
        "output_dir", None, "Directory the SavedModel is written to.", required=True
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = config.load_config(FLAGS.config_file)
    logging.info("Exporting %s", options.experiment_name or FLAGS.config_file)
    export_lib.export_saved_model(options, FLAGS.output_dir, FLAGS.checkpoint)


def run() -> None:
    """Console-script entry point (`deeplab-video-export`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
