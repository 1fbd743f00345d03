r"""Exports a Video-kMaX experiment (network, post-processing, tracking) as a SavedModel.

Usage:
  deeplab-video-export --config_file configs/kitti_step/resnet50.textproto \
      --checkpoint /path/to/model_dir --output_dir /path/to/export
  python -m deeplab_video.export.export_model ...

--checkpoint takes a checkpoint prefix (model_dir/ckpt-600) or a model_dir (its latest
checkpoint); without it the export holds freshly initialised weights. See the README's
serving section for the signatures.
"""

from absl import app, flags, logging

from deeplab_video import config
from deeplab_video.export import export_lib

_CONFIG_FILE = flags.DEFINE_string(
    "config_file", None, "Experiment textproto.", required=True, allow_override=True
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint prefix or model_dir (latest checkpoint); default: none.",
    allow_override=True,
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    None,
    "Directory the SavedModel is written to.",
    required=True,
    allow_override=True,
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = config.load_config(_CONFIG_FILE.value)
    logging.info("Exporting %s", options.experiment_name or _CONFIG_FILE.value)
    export_lib.export_saved_model(options, _OUTPUT_DIR.value, _CHECKPOINT.value)


def run() -> None:
    """Console-script entry point (`deeplab-video-export`)."""
    app.run(main)


if __name__ == "__main__":
    run()
