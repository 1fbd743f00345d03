"""Converts Cityscapes-VPS to deeplab-video TFRecords.

Expected layout: the release (github.com/mcahny/vps, docs/DATASET.md) after its
prepare_data scripts (fetch_city_images.py, merge_datasets.py, create_panoptic_labels.py)
have filled in the Cityscapes images and merged the labels:

    <root>/{train,val}/img/<video:04d>_<frame:04d>_<city>_<seq>_<n>_{newImg8bit,leftImg8bit}.png
    <root>/{train,val}/panoptic_inst/<same prefix>_{final_mask,gtFine_color}.png

A panoptic_inst PNG is a 16-bit single-channel map of train ids: a stuff pixel holds its
class id (0..10), a thing pixel class id * 1000 + object id (the object id may be 0),
void 255. Object ids are fixed over a video. Each video has 6 annotated frames (every 5th
frame of a 30-frame Cityscapes snippet); the 4-digit frame field counts the annotated
frames. Records hold semantic * 1000 + instance, instances renumbered 1, 2, ... per video
in order of first appearance (see `segments`). The test split has no labels and other
file names, and is not converted.
"""

import os
import re
from collections.abc import Iterator, Sequence

import numpy as np

from deeplab_video import datasets
from deeplab_video.data.converters import common, segments

IMAGE_DIR = "img"
PANOPTIC_DIR = "panoptic_inst"
SPLITS = ("train", "val")
# The image suffix of a frame -> the suffix of its panoptic_inst label.
LABEL_SUFFIXES = {"_newImg8bit.png": "_final_mask.png", "_leftImg8bit.png": "_gtFine_color.png"}
_FRAME_NAME = re.compile(r"(?P<video>\d{4})_(?P<frame>\d{4})_.+")
_VOID = 255
_THING_FACTOR = 1000


def list_split(root: str, split: str) -> list[common.SequenceFiles]:
    """Lists the videos of a split, each with its annotated frames paired and in order.

    Raises:
        ConversionError: an unknown split or missing folder, a file name without the
            `<video>_<frame>_` prefix or image suffix, or an image without its label.
    """
    if split not in SPLITS:
        raise common.ConversionError(
            f"Cityscapes-VPS split '{split}' has no panoptic labels; convert {SPLITS}"
        )
    image_dir = os.path.join(root, split, IMAGE_DIR)
    label_dir = os.path.join(root, split, PANOPTIC_DIR)
    for directory in (image_dir, label_dir):
        if not os.path.isdir(directory):
            raise common.ConversionError(f"{directory}: folder not found")
    labels = set(os.listdir(label_dir))
    images: dict[str, dict[str, str]] = {}
    frame_labels: dict[str, dict[str, str]] = {}
    for name in sorted(os.listdir(image_dir)):
        path = os.path.join(image_dir, name)
        match = _FRAME_NAME.fullmatch(name)
        suffix = next((s for s in LABEL_SUFFIXES if name.endswith(s)), None)
        if match is None or suffix is None:
            raise common.ConversionError(
                f"{path}: expected <video>_<frame>_..._{{newImg8bit,leftImg8bit}}.png"
            )
        label_name = name[: -len(suffix)] + LABEL_SUFFIXES[suffix]
        if label_name not in labels:
            raise common.ConversionError(f"{path}: missing frame, no {label_dir}/{label_name}")
        labels.remove(label_name)
        images.setdefault(match["video"], {})[match["frame"]] = path
        frame_labels.setdefault(match["video"], {})[match["frame"]] = os.path.join(
            label_dir, label_name
        )
    if labels:
        orphan = os.path.join(label_dir, sorted(labels)[0])
        raise common.ConversionError(f"{orphan}: missing frame, no image for this label")
    if not images:
        raise common.ConversionError(f"{image_dir}: no frames")
    return [
        common.pair_frames(video, images[video], frame_labels[video], consecutive=False)
        for video in sorted(images)
    ]


def _read_labels(sequence: common.SequenceFiles) -> Iterator[np.ndarray]:
    descriptor = datasets.CITYSCAPES_VPS
    track_ids = segments.TrackIds(sequence.sequence_id, descriptor.label_divisor)
    for frame in sequence.frames:
        path = frame.label_path
        label = common.read_png(path)
        if label.ndim != 2:
            raise common.ConversionError(f"{path}: expected a one-channel map, not {label.shape}")

        def segment_class(value: int, path: str = path) -> tuple[int, bool]:
            category = value if value < _THING_FACTOR else value // _THING_FACTOR
            is_thing = segments.class_is_thing(category, descriptor, path)
            return category, is_thing and value >= _THING_FACTOR

        yield segments.to_panoptic(label, segment_class, track_ids, descriptor, _VOID, path)


def convert(
    root: str,
    output_dir: str,
    splits: Sequence[str] = SPLITS,
    num_shards: int = 10,
    image_format: str | None = None,
) -> dict[str, list[str]]:
    """Converts Cityscapes-VPS splits to sharded TFRecords, one record per annotated frame.

    Every split is listed and checked before anything is written; a split's shards appear
    only once all its frames are written.

    Args:
        root: the cityscapes_vps folder (holding train/ and val/).
        output_dir: where `<split>-NNNNN-of-NNNNN.tfrecord` shards are written.
        splits: "train" and/or "val".
        num_shards: the most shards per split (a video never spans two shards).
        image_format: "png" or "jpeg" for the stored frames; None keeps PNG.

    Returns:
        split -> the written shard paths.

    Raises:
        ConversionError: a missing or unpaired file, a class id outside 0..18 (255 void),
            an image whose size differs from its label's (the message names the file).
    """
    listings = {split: list_split(root, split) for split in splits}
    return {
        split: common.write_split(
            sequences,
            _read_labels,
            datasets.CITYSCAPES_VPS,
            output_dir,
            split,
            num_shards,
            image_format,
        )
        for split, sequences in listings.items()
    }
