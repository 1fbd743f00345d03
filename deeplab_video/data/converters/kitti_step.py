"""Converts KITTI-STEP to deeplab-video TFRecords.

Expected layout (DeepLab2's g3doc/setup/kitti_step.md):

    <root>/images/{train,val,test}/<sequence:04d>/<frame:06d>.png
    <root>/panoptic_maps/{train,val}/<sequence:04d>/<frame:06d>.png

A panoptic map stores R = semantic train id (0..18, 255 void) and G * 256 + B = instance
id. Records hold semantic * 1000 + instance, exactly as DeepLab2's build_step_data.py
writes them. The test split has no panoptic maps: its records get an all-void label
(255 * 1000 everywhere), so they load through the same pipeline for inference.
"""

import os
from collections.abc import Iterator, Sequence

import numpy as np

from deeplab_video import datasets
from deeplab_video.data import panoptic_png
from deeplab_video.data.converters import common

IMAGE_DIR = "images"
PANOPTIC_DIR = "panoptic_maps"
UNLABELLED_SPLITS = ("test",)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_LABEL_SUFFIXES = (".png",)


def list_split(root: str, split: str) -> list[common.SequenceFiles]:
    """Lists the sequences of one split, frames paired and checked.

    Args:
        root: the KITTI-STEP root (holding images/ and panoptic_maps/).
        split: "train", "val" or "test".

    Returns:
        The sequences in sorted order, each with its frames in order.

    Raises:
        ConversionError: a missing split or sequence folder, an image without a panoptic
            map (or the reverse), or a gap in a sequence's frame numbers.
    """
    image_root = os.path.join(root, IMAGE_DIR, split)
    label_root = None if split in UNLABELLED_SPLITS else os.path.join(root, PANOPTIC_DIR, split)
    for directory in (image_root, label_root):
        if directory is not None and not os.path.isdir(directory):
            raise common.ConversionError(f"{directory}: split folder not found")
    names = sorted(n for n in os.listdir(image_root) if not n.startswith("."))
    if label_root is not None:
        extra = sorted(set(os.listdir(label_root)) - set(names))
        if extra:
            raise common.ConversionError(
                f"{os.path.join(label_root, extra[0])}: panoptic maps of a sequence "
                f"without images (missing frames)"
            )
    sequences = []
    for name in names:
        images = common.list_frames(os.path.join(image_root, name), _IMAGE_SUFFIXES)
        labels = None
        if label_root is not None:
            labels = common.list_frames(os.path.join(label_root, name), _LABEL_SUFFIXES)
        sequences.append(common.pair_frames(name, images, labels, consecutive=True))
    if not sequences:
        raise common.ConversionError(f"{image_root}: no sequence folders")
    return sequences


def read_panoptic_map(path: str, label_divisor: int) -> np.ndarray:
    """Reads one KITTI-STEP panoptic PNG.

    Args:
        path: the PNG (R = semantic, G * 256 + B = instance).
        label_divisor: the dataset's label divisor (1000).

    Returns:
        int32 [height, width], semantic * label_divisor + instance.

    Raises:
        ConversionError: not an 8-bit RGB PNG, or an instance id >= label_divisor.
    """
    rgb = common.read_png(path)
    if rgb.ndim != 3 or rgb.dtype != np.uint8:
        raise common.ConversionError(
            f"{path}: expected an 8-bit RGB panoptic map, got {rgb.dtype} {rgb.shape}"
        )
    instance = rgb[..., 1].astype(np.int32) * 256 + rgb[..., 2]
    if instance.max(initial=0) >= label_divisor:
        raise common.ConversionError(
            f"{path}: instance id {instance.max()} does not fit label divisor {label_divisor}"
        )
    return panoptic_png.decode(rgb, label_divisor)


def _read_labels(sequence: common.SequenceFiles) -> Iterator[np.ndarray]:
    for frame in sequence.frames:
        yield read_panoptic_map(frame.label_path, datasets.KITTI_STEP.label_divisor)


def convert(
    root: str,
    output_dir: str,
    splits: Sequence[str] = ("train", "val"),
    num_shards: int = 10,
    image_format: str | None = None,
) -> dict[str, list[str]]:
    """Converts KITTI-STEP splits to sharded TFRecords, one record per frame.

    Every split is listed and checked before anything is written; a split's shards appear
    only once all its frames are written.

    Args:
        root: the KITTI-STEP root.
        output_dir: where `<split>-NNNNN-of-NNNNN.tfrecord` shards are written.
        splits: which splits to convert; "test" has no panoptic maps and gets all-void
            labels (for inference only).
        num_shards: the most shards per split (a sequence never spans two shards).
        image_format: "png" or "jpeg" for the stored frames; None keeps the source format
            (PNG, lossless).

    Returns:
        split -> the written shard paths.

    Raises:
        ConversionError: a missing or unpaired file, a gap in a sequence's frame numbers,
            an image whose size differs from its panoptic map's, or a semantic id outside
            0..18 and 255 (the message names the file).
    """
    listings = {split: list_split(root, split) for split in splits}
    return {
        split: common.write_split(
            sequences,
            None if split in UNLABELLED_SPLITS else _read_labels,
            datasets.KITTI_STEP,
            output_dir,
            split,
            num_shards,
            image_format,
        )
        for split, sequences in listings.items()
    }
