r"""Converts VIPSeg (the 720p release) to deeplab-video TFRecord shards.

    deeplab-video-convert-vipseg --vipseg_root=/data/VIPSeg/VIPSeg_720P \
        --output_dir=datasets/vipseg [--label_format=auto|coco|raw] [--splits=train,val]
    python -m deeplab_video.data.converters.vipseg_cli ...
"""

from collections.abc import Sequence

from absl import flags

from deeplab_video import entry_point
from deeplab_video.data.converters import cli, vipseg

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string(
        "vipseg_root",
        None,
        "The VIPSeg_720P folder (images/, panomasks/ or panomasksRGB/ + JSON); the split "
        "lists train.txt/val.txt/test.txt are read from it or its parent.",
        required=True,
    )
    flags.DEFINE_enum(
        "label_format",
        "auto",
        list(vipseg.LABEL_FORMATS),
        "'coco': panomasksRGB/ + panoptic_gt_VIPSeg_<split>.json; 'raw': panomasks/; 'auto': "
        "coco where the split's JSON exists, else raw.",
    )
    cli.define_flags()
    flags.adopt_module_key_flags(cli)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(
        list(argv), vipseg.convert, root=FLAGS.vipseg_root, label_format=FLAGS.label_format
    )


def run() -> None:
    """Console-script entry point (deeplab-video-convert-vipseg)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
