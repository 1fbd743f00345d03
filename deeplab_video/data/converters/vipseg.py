"""Converts VIPSeg (the 720p release made by the dataset's change2_720p.py) to TFRecords.

Expected layout (github.com/VIPSeg-Dataset/VIPSeg-Dataset):

    <root>/images/<video>/<frame>.jpg
    <root>/panomasks/<video>/<frame>.png               raw masks ("raw" label format)
    <root>/panomasksRGB/<video>/<frame>.png            COCO-panoptic PNGs ("coco" format)
    <root>/panoptic_gt_VIPSeg_{train,val}.json         their segments_info
    train.txt / val.txt / test.txt                     video names, in <root> or its parent

Raw masks are single-channel 16-bit PNGs: 0 is void, values 1..124 are the category id + 1
(stuff, or a thing region without an instance), larger values are
(category id + 1) * 100 + instance. The COCO form (create_panoptic_video_labels.py +
splitjson.py) encodes a segment id as R + 256 G + 256^2 B, keeps each segment id fixed over
a video, and gives its category (0..123, panoVIPSeg_categories.json order, which is the
order of `datasets.VIPSEG`) in the JSON.

Both forms give the same records: semantic = category id, void = ignore label; a thing
segment gets instance ids 1, 2, ... in order of first appearance in its video (by frame,
then raster order), so ids stay fixed over the video; stuff and iscrowd segments get
instance 0. A raw thing region without an instance value is one segment with an id, as
create_panoptic_video_labels.py makes it.
Frames are ordered by their number (the file name); VIPSeg annotates a subsample of each
video's frames, so the numbers have gaps and are kept as they are. The test split has no
labels: its records get an all-void label, so they load through the same pipeline for
inference.
"""

import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

from deeplab_video import datasets
from deeplab_video.data.converters import common, segments

IMAGE_DIR = "images"
RAW_LABEL_DIR = "panomasks"
COCO_LABEL_DIR = "panomasksRGB"
COCO_JSON = "panoptic_gt_VIPSeg_{split}.json"
SPLIT_LIST = "{split}.txt"
UNLABELLED_SPLITS = ("test",)
LABEL_FORMATS = ("auto", "coco", "raw")
# Raw mask values above this are (category + 1) * 100 + instance.
_RAW_MAX_CATEGORY_VALUE = 124
_RAW_INSTANCE_FACTOR = 100
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_LABEL_SUFFIXES = (".png",)


def read_split_list(root: str, split: str) -> list[str]:
    """Reads `<split>.txt` (one video name per line) from `root` or its parent.

    Raises:
        ConversionError: the list is in neither place, or names no video.
    """
    candidates = [
        os.path.join(directory, SPLIT_LIST.format(split=split))
        for directory in (root, os.path.dirname(os.path.abspath(root)))
    ]
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                videos = [line.strip() for line in f if line.strip()]
            if not videos:
                raise common.ConversionError(f"{path}: the split list names no video")
            return videos
    raise common.ConversionError(f"split list not found at {' or '.join(candidates)}")


def resolve_label_format(root: str, split: str, label_format: str) -> str:
    """Returns "coco" or "raw" for a split ("auto": COCO when its JSON exists).

    Raises:
        ConversionError: an unknown label format.
    """
    if label_format not in LABEL_FORMATS:
        raise common.ConversionError(
            f"unknown VIPSeg label format '{label_format}'; expected one of {LABEL_FORMATS}"
        )
    if label_format != "auto":
        return label_format
    has_json = os.path.isfile(os.path.join(root, COCO_JSON.format(split=split)))
    return "coco" if has_json else "raw"


def list_split(root: str, split: str, label_format: str) -> list[common.SequenceFiles]:
    """Lists the videos of a split with their frames paired and in order.

    Args:
        root: the VIPSeg_720P folder.
        split: "train", "val" or "test".
        label_format: "coco" or "raw" (ignored for the unlabelled test split).

    Raises:
        ConversionError: missing split list or video folder, an image without a label or
            the reverse.
    """
    label_dir = COCO_LABEL_DIR if label_format == "coco" else RAW_LABEL_DIR
    sequences = []
    for video in read_split_list(root, split):
        images = common.list_frames(os.path.join(root, IMAGE_DIR, video), _IMAGE_SUFFIXES)
        labels = None
        if split not in UNLABELLED_SPLITS:
            labels = common.list_frames(os.path.join(root, label_dir, video), _LABEL_SUFFIXES)
        sequences.append(common.pair_frames(video, images, labels, consecutive=False))
    return sequences


def _read_raw_labels(sequence: common.SequenceFiles) -> Iterator[np.ndarray]:
    """Label reader of the raw form (panomasks/)."""
    track_ids = segments.TrackIds(sequence.sequence_id, datasets.VIPSEG.label_divisor)
    for frame in sequence.frames:
        path = frame.label_path
        mask = common.read_png(path)
        if mask.ndim != 2:
            raise common.ConversionError(f"{path}: expected a one-channel mask, not {mask.shape}")

        def segment_class(value: int, path: str = path) -> tuple[int, bool]:
            if value <= _RAW_MAX_CATEGORY_VALUE:
                category = value - 1
            else:
                category = value // _RAW_INSTANCE_FACTOR - 1
            return category, segments.class_is_thing(category, datasets.VIPSEG, path)

        yield segments.to_panoptic(mask, segment_class, track_ids, datasets.VIPSEG, 0, path)


def _coco_label_reader(
    root: str, split: str, sequences: Sequence[common.SequenceFiles]
) -> common.LabelReader:
    """Loads the split's COCO-panoptic JSON and returns the reader of panomasksRGB/.

    Raises:
        ConversionError: the JSON is missing or malformed, or lacks a listed frame.
    """
    json_path = os.path.join(root, COCO_JSON.format(split=split))
    try:
        with open(json_path, encoding="utf-8") as f:
            segments_info = {
                video["video_id"]: {
                    os.path.splitext(frame["file_name"])[0]: {
                        segment["id"]: segment for segment in frame["segments_info"]
                    }
                    for frame in video["annotations"]
                }
                for video in json.load(f)["annotations"]
            }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise common.ConversionError(f"{json_path}: not a VIPSeg panoptic JSON ({e!r})") from e
    for sequence in sequences:
        for frame in sequence.frames:
            if frame.name not in segments_info.get(sequence.sequence_id, {}):
                raise common.ConversionError(
                    f"{frame.label_path}: no segments_info for this frame in {json_path}"
                )

    def read(sequence: common.SequenceFiles) -> Iterator[np.ndarray]:
        track_ids = segments.TrackIds(sequence.sequence_id, datasets.VIPSEG.label_divisor)
        for frame in sequence.frames:
            path = frame.label_path
            info = segments_info[sequence.sequence_id][frame.name]
            rgb = common.read_png(path)
            if rgb.ndim != 3 or rgb.dtype != np.uint8:
                raise common.ConversionError(f"{path}: expected an 8-bit RGB panoptic PNG")
            rgb = rgb.astype(np.int32)
            segment_map = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]

            def segment_class(segment_id: int, path: str = path, info: dict = info):
                if segment_id not in info:
                    raise common.ConversionError(
                        f"{path}: segment {segment_id} has no segments_info in {json_path}"
                    )
                category = int(info[segment_id]["category_id"])
                is_thing = segments.class_is_thing(category, datasets.VIPSEG, path)
                return category, is_thing and not info[segment_id].get("iscrowd", 0)

            yield segments.to_panoptic(
                segment_map, segment_class, track_ids, datasets.VIPSEG, 0, path
            )

    return read


def convert(
    root: str,
    output_dir: str,
    splits: Sequence[str] = ("train", "val"),
    num_shards: int = 10,
    label_format: str = "auto",
    image_format: str | None = None,
) -> dict[str, list[str]]:
    """Converts VIPSeg splits to sharded TFRecords, one record per frame.

    Every split is listed and checked before anything is written; a split's shards appear
    only once all its frames are written.

    Args:
        root: the VIPSeg_720P folder.
        output_dir: where `<split>-NNNNN-of-NNNNN.tfrecord` shards are written.
        splits: which splits to convert; "test" has no labels and gets all-void ones (for
            inference only).
        num_shards: the most shards per split (a video never spans two shards).
        label_format: "coco" (panomasksRGB + JSON), "raw" (panomasks) or "auto".
        image_format: "png" or "jpeg" for the stored frames; None keeps the source format
            (JPEG, re-encoded by OpenCV at its default quality 95).

    Returns:
        split -> the written shard paths.

    Raises:
        ConversionError: a missing or unpaired file, an unknown category id, a frame whose
            image and label sizes differ (the message names the file).
    """
    plans = {}
    for split in splits:
        split_format = resolve_label_format(root, split, label_format)
        sequences = list_split(root, split, split_format)
        if split in UNLABELLED_SPLITS:
            reader = None
        elif split_format == "coco":
            reader = _coco_label_reader(root, split, sequences)
        else:
            reader = _read_raw_labels
        plans[split] = (sequences, reader)
    return {
        split: common.write_split(
            sequences, reader, datasets.VIPSEG, output_dir, split, num_shards, image_format
        )
        for split, (sequences, reader) in plans.items()
    }
