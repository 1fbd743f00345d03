r"""Converts Cityscapes-VPS (after the release's prepare_data scripts) to TFRecord shards.

    deeplab-video-convert-cityscapes-vps --cityscapes_vps_root=/data/cityscapes_vps \
        --output_dir=datasets/cityscapes_vps
    python -m deeplab_video.data.converters.cityscapes_vps_cli ...
"""

from collections.abc import Sequence

from absl import flags

from deeplab_video import entry_point
from deeplab_video.data.converters import cityscapes_vps, cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string(
        "cityscapes_vps_root",
        None,
        "The cityscapes_vps folder holding {train,val}/img and {train,val}/panoptic_inst.",
        required=True,
    )
    cli.define_flags()
    flags.adopt_module_key_flags(cli)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(list(argv), cityscapes_vps.convert, root=FLAGS.cityscapes_vps_root)


def run() -> None:
    """Console-script entry point (deeplab-video-convert-cityscapes-vps)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
