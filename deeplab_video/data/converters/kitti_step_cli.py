r"""Converts KITTI-STEP (DeepLab2's layout) to deeplab-video TFRecord shards.

    deeplab-video-convert-kitti-step --kitti_step_root=/data/kitti-step \
        --output_dir=datasets/kitti_step [--splits=train,val,test] [--num_shards=10]
    python -m deeplab_video.data.converters.kitti_step_cli ...
"""

from collections.abc import Sequence

from absl import flags

from deeplab_video import entry_point
from deeplab_video.data.converters import cli, kitti_step

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string(
        "kitti_step_root",
        None,
        "KITTI-STEP root holding images/ and panoptic_maps/.",
        required=True,
    )
    cli.define_flags()
    flags.adopt_module_key_flags(cli)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(list(argv), kitti_step.convert, root=FLAGS.kitti_step_root)


def run() -> None:
    """Console-script entry point (deeplab-video-convert-kitti-step)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
