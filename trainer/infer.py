r"""Runs Video-kMaX over a whole video and writes panoptic PNGs, an overlay MP4 and tracks.

Usage:
  deeplab-video-infer --config_file configs/kitti_step/resnet50.textproto \
      --checkpoint /path/to/model_dir --input dashcam.mp4 --output_dir out/
  python -m deeplab_video.trainer.infer ... --input /path/to/frame_folder
  python -m deeplab_video.trainer.infer --saved_model /path/to/export --input video.mp4 ...

The input is a video file (any resolution and length, e.g. H.264 MP4 from a phone or a
dashcam) or a folder of frames. Outputs, under --output_dir:
  panoptic/<frame:06d>.png  KITTI-STEP format (R = semantic, G * 256 + B = track id)
  overlay.mp4               the frames with one colour and "class #id" label per track
  tracks.json               per track: class, first and last frame, box per frame
"""

from absl import app, flags, logging

from deeplab_video.trainer import infer_lib

_CONFIG_FILE = flags.DEFINE_string(
    "config_file", None, "Experiment textproto.", allow_override=True
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint file or model_dir (latest checkpoint is used).",
    allow_override=True,
)
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "Exported SavedModel to run instead of --config_file/--checkpoint."
)
_INPUT = flags.DEFINE_string("input", None, "Video file or folder of frames.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where outputs go.", required=True, allow_override=True
)
_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "Dataset descriptor for --saved_model runs (classes, colours).",
    allow_override=True,
)
_NO_VIDEO = flags.DEFINE_bool("no_video", False, "Do not write overlay.mp4.")
_MAX_FRAMES = flags.DEFINE_integer(
    "max_frames", 0, "Stop after this many frames (0 = all).", allow_override=True
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if bool(_SAVED_MODEL.value) == bool(_CONFIG_FILE.value):
        raise app.UsageError("give either --config_file (with --checkpoint) or --saved_model")
    if _SAVED_MODEL.value and not _DATASET.value:
        raise app.UsageError("--saved_model needs --dataset (kitti_step, vipseg, ...)")
    summary = infer_lib.run_inference(
        input_path=_INPUT.value,
        output_dir=_OUTPUT_DIR.value,
        config_file=_CONFIG_FILE.value,
        checkpoint=_CHECKPOINT.value,
        saved_model=_SAVED_MODEL.value,
        dataset=_DATASET.value,
        write_video=not _NO_VIDEO.value,
        max_frames=_MAX_FRAMES.value,
    )
    logging.info("Done: %s", summary)


def run() -> None:
    """Console-script entry point (`deeplab-video-infer`)."""
    app.run(main)


if __name__ == "__main__":
    run()
