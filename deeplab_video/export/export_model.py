r"""Exports a Video-kMaX experiment (network, post-processing, tracking) for serving.

Usage:
  deeplab-video-export --config_file configs/kitti_step/resnet50.textproto \
      --checkpoint /path/to/model_dir --output_dir /path/to/export
  deeplab-video-export --config_file configs/kitti_step/resnet50_online.textproto \
      --checkpoint /path/to/model_dir --output_dir /path/to/export \
      --format tflite --frame_size 385,1249 --quantization float16
  python -m deeplab_video.export.export_model ...

--format saved_model (the default) writes a SavedModel to --output_dir. --format tflite
writes the online model (eval clip_length 1) as --output_dir/model.tflite, with its
frames fixed to --frame_size HEIGHT,WIDTH, and copies the experiment config beside it
(experiment.textproto). --checkpoint takes a checkpoint prefix (model_dir/ckpt-600) or
a model_dir (its latest checkpoint); without it the export holds freshly initialised
weights. See the README's serving and TFLite sections for the signatures.
"""

import os
from collections.abc import Sequence

from absl import app, flags, logging
from google.protobuf import text_format

from deeplab_video import config, entry_point
from deeplab_video.export import export_lib, tflite_export

FLAGS = flags.FLAGS

FORMATS = ("saved_model", "tflite")
TFLITE_FILE = "model.tflite"
TFLITE_CONFIG_COPY = "experiment.textproto"


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string("config_file", None, "Experiment textproto.", required=True)
    flags.DEFINE_string(
        "checkpoint", None, "Checkpoint prefix or model_dir (latest checkpoint); default: none."
    )
    flags.DEFINE_string(
        "output_dir",
        None,
        "Directory the SavedModel (or model.tflite and experiment.textproto) is written to.",
        required=True,
    )
    flags.DEFINE_enum("format", "saved_model", FORMATS, "What to export.")
    flags.DEFINE_string(
        "frame_size",
        None,
        "HEIGHT,WIDTH of the frames a --format tflite model takes (required for tflite).",
    )
    flags.DEFINE_enum(
        "quantization",
        "none",
        tflite_export.QUANTIZATIONS,
        "Weight quantization of a --format tflite model.",
    )


def parse_frame_size(text: str) -> tuple[int, int]:
    """'HEIGHT,WIDTH' -> (height, width).

    Raises:
      app.UsageError: not two positive integers.
    """
    parts = text.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise app.UsageError(
            f"--frame_size must be two positive integers HEIGHT,WIDTH (e.g. 385,1249); got '{text}'"
        )
    return int(parts[0]), int(parts[1])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.format == "tflite" and not FLAGS.frame_size:
        raise app.UsageError("--format tflite needs --frame_size HEIGHT,WIDTH")
    if FLAGS.format == "saved_model" and (FLAGS.frame_size or FLAGS.quantization != "none"):
        raise app.UsageError("--frame_size and --quantization apply to --format tflite only")
    frame_size = parse_frame_size(FLAGS.frame_size) if FLAGS.frame_size else None
    options = config.load_config(FLAGS.config_file)
    logging.info("Exporting %s", options.experiment_name or FLAGS.config_file)
    if FLAGS.format == "saved_model":
        export_lib.export_saved_model(options, FLAGS.output_dir, FLAGS.checkpoint)
        return
    tflite_export.export_tflite(
        options,
        os.path.join(FLAGS.output_dir, TFLITE_FILE),
        frame_size,
        FLAGS.checkpoint,
        FLAGS.quantization,
    )
    with open(os.path.join(FLAGS.output_dir, TFLITE_CONFIG_COPY), "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(options))


def run() -> None:
    """Console-script entry point (`deeplab-video-export`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
