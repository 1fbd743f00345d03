r"""Converts published weights into a checkpoint of ours, checking that they fit a config.

Usage:
  deeplab-video-convert-checkpoint --source kmax_resnet50_coco_train \
      --config_file configs/coco/kmax_resnet50.textproto --output_dir converted/coco_r50
  python -m deeplab_video.model.convert_checkpoint ...

--source takes anything `pretrained.load_pretrained` reads: a DeepLab2 kMaX-DeepLab
checkpoint (prefix or extracted folder), an official PyTorch Video-kMaX file, or a
checkpoint of ours. The config's inference network is built and filled; the run fails,
with one line naming the first missing or mismatched variables, unless every variable is
filled. Outputs, under --output_dir:
  ckpt-1.*                  our checkpoint (the inference network's checkpoint items):
                            give output_dir as --checkpoint to infer, export or evaluate,
                            or as model_options.initial_checkpoint to train
  conversion_report.json    restored / missing / mismatched / unused variables (written
                            also when the source does not fit)
  config.textproto          the config the checkpoint belongs to
"""

import json
import os
from collections.abc import Sequence

import tensorflow as tf
from absl import app, flags, logging
from google.protobuf import text_format

from deeplab_video import config, entry_point
from deeplab_video.model import builder, pretrained

FLAGS = flags.FLAGS
REPORT_FILE = "conversion_report.json"
CONFIG_FILE = "config.textproto"
CHECKPOINT_PREFIX = "ckpt"


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string(
        "source", None, "Checkpoint or file to convert (DeepLab2, PyTorch, ours).", required=True
    )
    flags.DEFINE_string("config_file", None, "Experiment textproto.", required=True)
    flags.DEFINE_string("output_dir", None, "Where the checkpoint goes.", required=True)


def convert(source: str, config_file: str, output_dir: str) -> pretrained.LoadReport:
    """Fills the inference network of `config_file` from `source` and saves it as ours.

    Args:
        source: checkpoint prefix, folder or file of any format `pretrained` reads.
        config_file: the experiment textproto whose network the weights must fill.
        output_dir: receives the checkpoint, REPORT_FILE and CONFIG_FILE.

    Returns:
        The LoadReport.

    Raises:
        config.ConfigError: invalid config.
        FileNotFoundError: nothing readable at `source`.
        pretrained.UnknownCheckpointFormatError: `source` is in no known format.
        pretrained.CheckpointMismatchError: some variable is missing or mismatched (the
            report is written, the checkpoint is not).
    """
    options = config.load_config(config_file)
    model = builder.build_model(options, inference_only=True)
    report = pretrained.load_pretrained(model, source)
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_FILE), "w") as f:
        json.dump(report.to_json(), f, indent=1)
    report.check_fits(pretrained.describe_model(options.model_options, config_file))
    checkpoint = tf.train.Checkpoint(**model.checkpoint_items)
    prefix = checkpoint.save(os.path.join(output_dir, CHECKPOINT_PREFIX))
    with tf.io.gfile.GFile(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        f.write(text_format.MessageToString(options))
    logging.info(
        "Wrote %s: %d variables from %s (%s).",
        prefix,
        len(report.restored),
        report.source,
        report.source_format,
    )
    return report


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    convert(FLAGS.source, FLAGS.config_file, FLAGS.output_dir)


def run() -> None:
    """Console-script entry point (`deeplab-video-convert-checkpoint`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
