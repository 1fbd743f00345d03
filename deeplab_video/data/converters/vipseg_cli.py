r"""Converts VIPSeg (the 720p release) to deeplab-video TFRecord shards.

    deeplab-video-convert-vipseg --vipseg_root=/data/VIPSeg/VIPSeg_720P \
        --output_dir=datasets/vipseg [--label_format=auto|coco|raw] [--splits=train,val]
    python -m deeplab_video.data.converters.vipseg_cli ...
"""

from collections.abc import Sequence

from absl import app, flags

from deeplab_video.data.converters import cli, vipseg

_ROOT = flags.DEFINE_string(
    "vipseg_root",
    None,
    "The VIPSeg_720P folder (images/, panomasks/ or panomasksRGB/ + JSON); the split lists "
    "train.txt/val.txt/test.txt are read from it or its parent.",
    required=True,
)
_LABEL_FORMAT = flags.DEFINE_enum(
    "label_format",
    "auto",
    list(vipseg.LABEL_FORMATS),
    "'coco': panomasksRGB/ + panoptic_gt_VIPSeg_<split>.json; 'raw': panomasks/; 'auto': "
    "coco where the split's JSON exists, else raw.",
)


def main(argv: Sequence[str]) -> None:
    cli.convert_from_flags(
        list(argv), vipseg.convert, root=_ROOT.value, label_format=_LABEL_FORMAT.value
    )


def run() -> None:
    """Console-script entry point (deeplab-video-convert-vipseg)."""
    app.run(main)


if __name__ == "__main__":
    run()
