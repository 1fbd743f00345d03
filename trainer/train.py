r"""Trains and evaluates Video-kMaX (deeplab-video's training CLI).

Usage:
    python trainer/train.py --config_file=configs/synthetic/tiny_online.textproto \
        --model_dir=/tmp/tiny_online --mode=train_and_eval

The flags choose only the mode, the paths and the devices; every other setting comes from
the textproto config. Re-running the same command resumes from the latest checkpoint in
--model_dir.
"""

from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video import config, entry_point
from deeplab_video.trainer import train_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string("config_file", None, "Experiment textproto (see configs/).", required=True)
    flags.DEFINE_enum("mode", "train", list(train_lib.MODES), "What to run.")
    flags.DEFINE_string(
        "model_dir", None, "Checkpoints, summaries and results go here.", required=True
    )
    flags.DEFINE_integer(
        "num_gpus",
        None,
        "GPUs to use; more than 1 selects the mirrored strategy (default: config).",
    )
    flags.DEFINE_string("master", None, "TPU address; selects the TPU strategy (default: config).")
    flags.DEFINE_enum(
        "strategy",
        None,
        list(config.STRATEGIES),
        "Overrides trainer_options.distribution.strategy.",
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = config.load_config(FLAGS.config_file)
    logging.info(
        "Experiment '%s' (%s): mode %s, model_dir %s",
        options.experiment_name,
        FLAGS.config_file,
        FLAGS.mode,
        FLAGS.model_dir,
    )
    train_lib.run_experiment(
        FLAGS.mode,
        options,
        FLAGS.model_dir,
        num_gpus=FLAGS.num_gpus,
        master=FLAGS.master,
        strategy=FLAGS.strategy,
    )


def run() -> None:
    """Console entry point (`deeplab-video-train`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
