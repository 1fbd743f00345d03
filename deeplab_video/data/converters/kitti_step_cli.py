r"""Converts KITTI-STEP (DeepLab2's layout) to deeplab-video TFRecord shards.

    deeplab-video-convert-kitti-step --kitti_step_root=/data/kitti-step \
        --output_dir=datasets/kitti_step [--splits=train,val,test] [--num_shards=10]
    python -m deeplab_video.data.converters.kitti_step_cli ...
"""

from collections.abc import Sequence

from absl import app, flags

from deeplab_video.data.converters import cli, kitti_step

_ROOT = flags.DEFINE_string(
    "kitti_step_root", None, "KITTI-STEP root holding images/ and panoptic_maps/.", required=True
)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(list(argv), kitti_step.convert, root=_ROOT.value)


def run() -> None:
    """Console-script entry point (deeplab-video-convert-kitti-step)."""
    app.run(main)


if __name__ == "__main__":
    run()
