r"""Runs Video-kMaX over a whole video and writes panoptic PNGs, an overlay MP4 and tracks.

Usage:
  deeplab-video-infer --config_file configs/kitti_step/resnet50.textproto \
      --checkpoint /path/to/model_dir --input dashcam.mp4 --output_dir out/
  python -m deeplab_video.inference.infer ... --input /path/to/frame_folder
  python -m deeplab_video.inference.infer --saved_model /path/to/export --input video.mp4 ...
  deeplab-video-infer --tflite /path/to/model.tflite --dataset kitti_step --input video.mp4 ...

The input is a video file (any resolution and length, e.g. H.264 MP4 from a phone or a
dashcam) or a folder of frames. Outputs, under --output_dir:
  panoptic/<frame:06d>.png  KITTI-STEP format (R = semantic, G * 256 + B = track id)
  overlay.mp4               the frames with one colour and "class #id" label per track
  tracks.json               per track: class, first and last frame, box per frame
"""

from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video import datasets, entry_point
from deeplab_video.inference import infer_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string("config_file", None, "Experiment textproto.")
    flags.DEFINE_string(
        "checkpoint", None, "Checkpoint file or model_dir (latest checkpoint is used)."
    )
    flags.DEFINE_string(
        "saved_model", None, "Exported SavedModel to run instead of --config_file/--checkpoint."
    )
    flags.DEFINE_string("input", None, "Video file or folder of frames.", required=True)
    flags.DEFINE_string("output_dir", None, "Where outputs go.", required=True)
    flags.DEFINE_string(
        "tflite",
        None,
        "Exported TFLite model (online) to run instead of --config_file/--checkpoint; frames "
        "of another size than its own are resized to it.",
    )
    flags.DEFINE_enum(
        "dataset",
        None,
        sorted(datasets.DATASETS),
        "Dataset descriptor for --saved_model and --tflite runs (classes, colours).",
    )
    flags.DEFINE_bool("no_video", False, "Do not write overlay.mp4.")
    flags.DEFINE_integer("max_frames", 0, "Stop after this many frames (0 = all).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if sum(bool(model) for model in (FLAGS.config_file, FLAGS.saved_model, FLAGS.tflite)) != 1:
        raise app.UsageError(
            "give one of --config_file (with --checkpoint), --saved_model or --tflite"
        )
    for flag in ("saved_model", "tflite"):
        if FLAGS[flag].value and not FLAGS.dataset:
            raise app.UsageError(f"--{flag} needs --dataset ({', '.join(datasets.DATASETS)})")
    summary = infer_lib.run_inference(
        input_path=FLAGS.input,
        output_dir=FLAGS.output_dir,
        config_file=FLAGS.config_file,
        checkpoint=FLAGS.checkpoint,
        saved_model=FLAGS.saved_model,
        tflite=FLAGS.tflite,
        dataset=FLAGS.dataset,
        write_video=not FLAGS.no_video,
        max_frames=FLAGS.max_frames,
    )
    logging.info("Done: %s", summary)


def run() -> None:
    """Console-script entry point (`deeplab-video-infer`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
