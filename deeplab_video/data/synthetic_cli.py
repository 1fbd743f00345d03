r"""Generates the built-in synthetic video panoptic dataset.

Writes train/val TFRecord shards (the schema of deeplab_video.data.tfrecord) and, unless
--nowrite_pngs, KITTI-STEP-style image and label PNGs for the evaluation tools. Nothing is
written when the directory already holds the same dataset.

    deeplab-video-synthetic --output_dir=datasets/synthetic
    python -m deeplab_video.data.synthetic_cli --output_dir=/tmp/synthetic --seed=3
"""

from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video.data import synthetic

_DEFAULTS = synthetic.SyntheticConfig()
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory of the dataset.", required=True, allow_override=True
)
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed of the whole dataset.")
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train_sequences", _DEFAULTS.num_train_sequences, "Training sequences."
)
_NUM_VAL = flags.DEFINE_integer(
    "num_val_sequences", _DEFAULTS.num_val_sequences, "Validation sequences."
)
_MIN_FRAMES = flags.DEFINE_integer("min_frames", _DEFAULTS.min_frames, "Shortest sequence.")
_MAX_FRAMES = flags.DEFINE_integer(
    "max_frames", _DEFAULTS.max_frames, "Longest sequence.", allow_override=True
)
_HEIGHT = flags.DEFINE_integer("height", _DEFAULTS.height, "Frame height in pixels.")
_WIDTH = flags.DEFINE_integer("width", _DEFAULTS.width, "Frame width in pixels.")
_MAX_OBJECTS = flags.DEFINE_integer(
    "max_objects", _DEFAULTS.max_objects, "Most independent objects per sequence."
)
_TRAIN_SHARDS = flags.DEFINE_integer(
    "num_train_shards", _DEFAULTS.num_train_shards, "TFRecord shards of the train split."
)
_VAL_SHARDS = flags.DEFINE_integer(
    "num_val_shards", _DEFAULTS.num_val_shards, "TFRecord shards of the val split."
)
_WRITE_PNGS = flags.DEFINE_bool(
    "write_pngs", _DEFAULTS.write_pngs, "Also write KITTI-STEP-style image and label PNGs."
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = synthetic.SyntheticConfig(
        seed=_SEED.value,
        num_train_sequences=_NUM_TRAIN.value,
        num_val_sequences=_NUM_VAL.value,
        min_frames=_MIN_FRAMES.value,
        max_frames=_MAX_FRAMES.value,
        height=_HEIGHT.value,
        width=_WIDTH.value,
        max_objects=_MAX_OBJECTS.value,
        num_train_shards=_TRAIN_SHARDS.value,
        num_val_shards=_VAL_SHARDS.value,
        write_pngs=_WRITE_PNGS.value,
    )
    path = synthetic.ensure_synthetic_dataset(_OUTPUT_DIR.value, config)
    logging.info("Synthetic dataset ready in %s", path)


def run() -> None:
    """Console-script entry point (deeplab-video-synthetic)."""
    app.run(main)


if __name__ == "__main__":
    run()
