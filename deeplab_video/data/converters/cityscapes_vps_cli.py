r"""Converts Cityscapes-VPS (after the release's prepare_data scripts) to TFRecord shards.

    python -m deeplab_video.data.converters.cityscapes_vps_cli \
        --cityscapes_vps_root=/data/cityscapes_vps --output_dir=datasets/cityscapes_vps
"""

from collections.abc import Sequence

from absl import app, flags

from deeplab_video.data.converters import cityscapes_vps, cli

_ROOT = flags.DEFINE_string(
    "cityscapes_vps_root",
    None,
    "The cityscapes_vps folder holding {train,val}/img and {train,val}/panoptic_inst.",
    required=True,
)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(list(argv), cityscapes_vps.convert, root=_ROOT.value)


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
