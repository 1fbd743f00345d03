"""What every dataset converter shares: file pairing, validation and all-or-nothing output.

A converter lists each split as `SequenceFiles` (frames in order, image and label paths),
checks the listing (every image has a label and vice versa, frame numbers without gaps
where the dataset promises them), then hands the sequences and a label reader to
`write_split`. That function decodes every label, checks it against its image and the
dataset's classes, and writes the frames as sharded TFRecords that appear only once the
whole split has been written: a failure leaves no shard and no temporary file behind.
"""

import dataclasses
import glob
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import tqdm
from absl import logging

from deeplab_video import datasets
from deeplab_video.data import tfrecord


class ConversionError(ValueError):
    """A raw dataset that cannot be converted; the message names the offending file."""


@dataclasses.dataclass(frozen=True)
class FrameFiles:
    """The files of one frame.

    Attributes:
        frame_index: the frame's number in its sequence, from its file name (written as
            video/frame_id).
        image_path: the encoded RGB image (PNG or JPEG).
        label_path: the label file, or None for a split without labels (test).
    """

    frame_index: int
    image_path: str
    label_path: str | None

    @property
    def name(self) -> str:
        """The frame's file name without extension."""
        return os.path.splitext(os.path.basename(self.image_path))[0]


@dataclasses.dataclass(frozen=True)
class SequenceFiles:
    """One video: its name and its frames in temporal order."""

    sequence_id: str
    frames: tuple[FrameFiles, ...]


# Reads the labels of one labelled sequence: one int32 [height, width] panoptic map
# (semantic * label_divisor + instance) per frame, in the order of `SequenceFiles.frames`.
LabelReader = Callable[[SequenceFiles], Iterator[np.ndarray]]


def list_frames(directory: str, suffixes: Sequence[str]) -> dict[str, str]:
    """Maps the file names (without extension) of a folder's frames to their paths.

    Args:
        directory: folder holding the frames of one sequence.
        suffixes: accepted extensions, lower case with the dot (e.g. (".png",)).

    Raises:
        ConversionError: the folder is missing, holds no file with these extensions, or
            holds two files of one frame (e.g. 000001.png and 000001.jpg).
    """
    if not os.path.isdir(directory):
        raise ConversionError(f"{directory}: folder not found")
    frames = {}
    for name in sorted(os.listdir(directory)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in suffixes or name.startswith("."):
            continue
        if stem in frames:
            raise ConversionError(f"{os.path.join(directory, name)}: a second file of '{stem}'")
        frames[stem] = os.path.join(directory, name)
    if not frames:
        raise ConversionError(f"{directory}: no {'/'.join(suffixes)} frames in this folder")
    return frames


def pair_frames(
    sequence_id: str,
    images: dict[str, str],
    labels: dict[str, str] | None,
    consecutive: bool,
) -> SequenceFiles:
    """Pairs images and labels by frame number (the file name), in frame order.

    Args:
        sequence_id: the sequence's name.
        images: file name without extension (a frame number) -> image path.
        labels: file name without extension -> label path; None for an unlabelled split.
        consecutive: whether the dataset promises frame numbers without gaps (KITTI-STEP);
            datasets that annotate a subsample of frames (VIPSeg) have gaps.

    Raises:
        ConversionError: an image without a label or a label without an image, a file name
            that is not a frame number, or (consecutive) a gap in the numbering.
    """
    if labels is not None:
        unlabelled = sorted(images.keys() - labels.keys())
        if unlabelled:
            raise ConversionError(f"{images[unlabelled[0]]}: missing frame, no label for it")
        orphans = sorted(labels.keys() - images.keys())
        if orphans:
            raise ConversionError(f"{labels[orphans[0]]}: missing frame, no image for it")
    for name, path in images.items():
        if not name.isdigit():
            raise ConversionError(f"{path}: the file name is not a frame number")
    names = sorted(images, key=int)
    for previous, name in zip(names, names[1:], strict=False):
        if int(name) == int(previous):
            raise ConversionError(f"{images[name]}: frame number of {images[previous]} again")
        if consecutive and int(name) != int(previous) + 1:
            raise ConversionError(
                f"{images[name]}: frame {int(previous) + 1} of sequence '{sequence_id}' is "
                f"missing (frame numbers must be consecutive)"
            )
    frames = tuple(
        FrameFiles(int(name), images[name], None if labels is None else labels[name])
        for name in names
    )
    return SequenceFiles(sequence_id, frames)


def read_png(path: str) -> np.ndarray:
    """Reads a PNG exactly as stored (8 or 16 bit, 1 or 3 channels; colour as RGB).

    Returns:
        uint8 or uint16 [height, width] or [height, width, 3] (RGB order).

    Raises:
        ConversionError: the file is missing or cannot be decoded.
    """
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConversionError(f"{path}: missing or not a decodable image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def read_image(path: str) -> tuple[np.ndarray, str]:
    """Reads a colour frame and tells its file format.

    Returns:
        (uint8 [height, width, 3] RGB, "png" or "jpeg").

    Raises:
        ConversionError: missing file, or not a decodable PNG/JPEG.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConversionError(f"{path}: cannot be read ({e.strerror})") from e
    if data.startswith(b"\x89PNG"):
        image_format = "png"
    elif data.startswith(b"\xff\xd8"):
        image_format = "jpeg"
    else:
        raise ConversionError(f"{path}: frames must be PNG or JPEG files")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ConversionError(f"{path}: not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), image_format


def check_panoptic(
    panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor, label_path: str
) -> None:
    """Checks a converted label against the dataset's classes.

    Args:
        panoptic: int32 [height, width], semantic * label_divisor + instance.
        descriptor: the dataset.
        label_path: the label file the map came from (for the message).

    Raises:
        ConversionError: a negative label, or a semantic id that is neither a class nor the
            ignore label (the message lists the bad values).
    """
    if panoptic.size and panoptic.min() < 0:
        raise ConversionError(f"{label_path}: negative panoptic label {panoptic.min()}")
    semantic = np.unique(panoptic // descriptor.label_divisor)
    bad = semantic[(semantic >= descriptor.num_classes) & (semantic != descriptor.ignore_label)]
    if bad.size:
        raise ConversionError(
            f"{label_path}: semantic ids {bad.tolist()} are outside {descriptor.name}'s "
            f"classes 0..{descriptor.num_classes - 1} and ignore label {descriptor.ignore_label}"
        )


def assign_shards(sequences: Sequence[SequenceFiles], num_shards: int) -> list[int]:
    """Spreads whole sequences over at most `num_shards` shards with balanced frame counts.

    Sequences stay in order and a sequence never spans two shards, so each shard holds
    complete sequences with their frames in order. Fewer shards are used when there are
    fewer sequences (or a long sequence fills several shares); no shard is empty.

    Returns:
        The shard index of every sequence: non-decreasing, starting at 0, without gaps.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    total = sum(len(s.frames) for s in sequences)
    ideal, start = [], 0
    for sequence in sequences:
        # The share of the frame count in which the sequence's middle frame falls.
        middle_twice = 2 * start + len(sequence.frames)
        ideal.append(min(num_shards - 1, middle_twice * num_shards // max(2 * total, 1)))
        start += len(sequence.frames)
    renumber = {shard: index for index, shard in enumerate(sorted(set(ideal)))}
    return [renumber[shard] for shard in ideal]


def write_split(
    sequences: Sequence[SequenceFiles],
    read_labels: LabelReader | None,
    descriptor: datasets.DatasetDescriptor,
    output_dir: str,
    split: str,
    num_shards: int,
    image_format: str | None = None,
) -> list[str]:
    """Writes a split as sharded TFRecords (`tfrecord` schema), all or nothing.

    Every frame's label is checked against its image size and the dataset's classes. The
    shards are renamed to their final names only after the last frame is written; on any
    error they are deleted. Shards of the split left by an earlier run with another shard
    count are deleted once the new ones are in place.

    Args:
        sequences: the split's sequences, frames in order.
        read_labels: reads a sequence's panoptic maps; None for an unlabelled split, whose
            records get an all-void label (ignore_label * label_divisor everywhere).
        descriptor: the dataset (classes, label divisor, ignore label).
        output_dir: the output folder (created if needed).
        split: the split name, the shards' prefix.
        num_shards: the most shards to write (see `assign_shards`).
        image_format: "png" or "jpeg" for the stored frames; None keeps each file's format.

    Returns:
        The shard paths.

    Raises:
        ConversionError: no sequence, an unreadable image or label, an image whose size
            differs from its label's, or a label outside the dataset's classes (the message
            names the file).
        ValueError: an unknown image format.
    """
    if not sequences:
        raise ConversionError(f"{descriptor.name} {split}: the split holds no sequence")
    if image_format not in (None, *tfrecord.IMAGE_FORMATS):
        raise ValueError(f"image_format must be one of {tfrecord.IMAGE_FORMATS} or None")
    shards = assign_shards(sequences, num_shards)
    total = sum(len(s.frames) for s in sequences)
    void = descriptor.ignore_label * descriptor.label_divisor
    bar = tqdm.tqdm(total=total, desc=f"{descriptor.name} {split}", unit="frame", file=sys.stderr)
    with bar, tfrecord.ShardedWriter(output_dir, split, shards[-1] + 1) as writer:
        for sequence, shard in zip(sequences, shards, strict=True):
            labels = read_labels(sequence) if read_labels is not None else None
            for frame in sequence.frames:
                image, source_format = read_image(frame.image_path)
                if labels is None:
                    panoptic = np.full(image.shape[:2], void, np.int32)
                else:
                    panoptic = next(labels)
                    if panoptic.shape != image.shape[:2]:
                        raise ConversionError(
                            f"{frame.label_path}: label size {panoptic.shape} differs from "
                            f"image {frame.image_path} size {image.shape[:2]}"
                        )
                    check_panoptic(panoptic, descriptor, frame.label_path)
                record = tfrecord.encode_frame(
                    image,
                    panoptic,
                    sequence.sequence_id,
                    frame.frame_index,
                    image_format or source_format,
                )
                writer.write(shard, record)
                bar.update()
    _remove_stale_shards(output_dir, split, writer.paths)
    logging.info("Wrote %d frames of %s %s to %s", total, descriptor.name, split, output_dir)
    return writer.paths


def _remove_stale_shards(output_dir: str, split: str, keep: Sequence[str]) -> None:
    """Deletes `<split>-NNNNN-of-NNNNN.tfrecord` shards of an earlier run not in `keep`."""
    shard_name = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}\.tfrecord")
    for path in glob.glob(os.path.join(glob.escape(output_dir), f"{split}-*-of-*.tfrecord")):
        if path not in keep and shard_name.fullmatch(os.path.basename(path)):
            logging.info("Removing %s, a shard of an earlier conversion", path)
            os.remove(path)
