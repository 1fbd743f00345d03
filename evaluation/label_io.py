"""Reads and writes panoptic label PNGs in the KITTI-STEP and VIPSeg folder layouts.

Both layouts hold one folder per sequence with one PNG per annotated frame,
`<root>/<sequence>/<frame>.png`, frames in name order. Ground truth and prediction use the
same layout and file names. Decoded maps use our encoding,
`semantic * label_divisor + instance`, with void as `ignore_label * label_divisor`.

- kitti_step (KITTI-STEP `panoptic_maps`, `<sequence>/<frame:06d>.png`): 8-bit RGB with
  R = semantic class (255 = void) and G * 256 + B = instance id (0 = crowd / no id on a
  thing class).
- vipseg (VIPSeg `VIPSeg_720P/panomasks`, `<video>/<frame>.png`): one channel (8 or 16
  bit). 0 is void; a value v in 1..num_classes is the stuff class v - 1; a larger value
  is a thing, class v // 100 - 1 with instance v % 100 (VIPSeg's README: "category_id x
  100 + instance_id", with 1-based category ids). VIPSeg's instance ids start at 0 and it
  has no crowd, so instance v % 100 becomes our instance v % 100 + 1 (our 0 means crowd).

A dataset is any object with `num_classes`, `thing_ids`, `ignore_label` and
`label_divisor` (e.g. `deeplab_video.datasets.DatasetDescriptor`).
"""

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from deeplab_video.evaluation import label_counts

FORMATS = ("kitti_step", "vipseg")
_SUFFIX = ".png"
# VIPSeg encodes a thing pixel as (class + 1) * _VIPSEG_FACTOR + instance.
_VIPSEG_FACTOR = 100


class LabelFileError(ValueError):
    """A label PNG is missing, unreadable, of the wrong size or holds unknown classes.

    The message names the file.
    """


def _check_format(label_format: str) -> None:
    if label_format not in FORMATS:
        raise ValueError(f"unknown label format '{label_format}'; expected one of {FORMATS}")


def _check_classes(path: str, class_ids: np.ndarray, dataset: Any) -> None:
    bad = label_counts.unknown_classes(class_ids, dataset.num_classes, dataset.ignore_label)
    if bad:
        raise LabelFileError(
            f"{path}: classes {bad} are not among the dataset's {dataset.num_classes} "
            f"classes (0..{dataset.num_classes - 1}, void {dataset.ignore_label})"
        )


def _check_instances(path: str, instances: np.ndarray, dataset: Any) -> None:
    if instances.size and instances.max() >= dataset.label_divisor:
        raise LabelFileError(
            f"{path}: instance id {instances.max()} does not fit below the label divisor "
            f"{dataset.label_divisor}"
        )


def _decode_kitti_step(path: str, image: np.ndarray, dataset: Any) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise LabelFileError(f"{path}: expected an 8-bit RGB PNG, got {image.dtype} {image.shape}")
    semantic = image[..., 2].astype(np.int64)  # OpenCV stores BGR.
    instance = image[..., 1].astype(np.int64) * 256 + image[..., 0]
    _check_classes(path, np.flatnonzero(np.bincount(semantic.ravel(), minlength=256)), dataset)
    _check_instances(path, instance, dataset)
    return semantic * dataset.label_divisor + instance


def _decode_vipseg(path: str, image: np.ndarray, dataset: Any) -> np.ndarray:
    if image.ndim != 2:
        raise LabelFileError(f"{path}: expected a one-channel PNG, got shape {image.shape}")
    values = image.astype(np.int64)
    present = np.flatnonzero(np.bincount(values.ravel()))
    thing_values = present[present > dataset.num_classes]
    _check_classes(path, thing_values // _VIPSEG_FACTOR - 1, dataset)
    _check_instances(path, thing_values % _VIPSEG_FACTOR + 1, dataset)
    is_thing = values > dataset.num_classes
    semantic = np.where(is_thing, values // _VIPSEG_FACTOR, values) - 1
    semantic[values == 0] = dataset.ignore_label
    instance = np.where(is_thing, values % _VIPSEG_FACTOR + 1, 0)
    return semantic * dataset.label_divisor + instance


def read_label_map(path: str | os.PathLike, label_format: str, dataset: Any) -> np.ndarray:
    """Reads one panoptic PNG.

    Args:
        path: the PNG file.
        label_format: 'kitti_step' or 'vipseg'.
        dataset: supplies num_classes, ignore_label and label_divisor.

    Returns:
        int64 [height, width] panoptic labels, semantic * label_divisor + instance.

    Raises:
        LabelFileError: the file is missing or undecodable, has the wrong channels, or
            holds a class or instance id the dataset cannot have.
    """
    _check_format(label_format)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LabelFileError(f"{path}: no such label file")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise LabelFileError(f"{path}: cannot be decoded as a PNG")
    if label_format == "kitti_step":
        return _decode_kitti_step(path, image, dataset)
    return _decode_vipseg(path, image, dataset)


def write_label_map(
    path: str | os.PathLike, panoptic: np.ndarray, label_format: str, dataset: Any
) -> None:
    """Writes one panoptic map as a PNG in `label_format` (the inverse of `read_label_map`).

    Args:
        path: the PNG file to write (its folder is created).
        panoptic: int [height, width] labels, semantic * label_divisor + instance.
        label_format: 'kitti_step' or 'vipseg'.
        dataset: supplies num_classes, thing_ids, ignore_label and label_divisor.

    Raises:
        ValueError: a label cannot be stored in the format (e.g. a VIPSeg instance id
            above 100, or a KITTI-STEP class or instance that does not fit 8 / 16 bits).
    """
    _check_format(label_format)
    panoptic = np.asarray(panoptic, np.int64)
    semantic, instance = np.divmod(panoptic, dataset.label_divisor)
    void = semantic == dataset.ignore_label
    if label_format == "kitti_step":
        semantic = np.where(void, 255, semantic)
        if semantic.max() > 255 or instance.max() >= 65536:
            raise ValueError("KITTI-STEP PNGs hold classes up to 255 and instances below 65536")
        image = np.stack([instance % 256, instance // 256, semantic], axis=-1).astype(np.uint8)
    else:
        is_thing = np.isin(semantic, list(dataset.thing_ids)) & (instance > 0)
        if np.any(instance[is_thing] > _VIPSEG_FACTOR):
            raise ValueError(f"VIPSeg PNGs hold thing instance ids 1..{_VIPSEG_FACTOR} only")
        values = np.where(is_thing, (semantic + 1) * _VIPSEG_FACTOR + instance - 1, semantic + 1)
        image = np.where(void, 0, values).astype(np.uint16)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(os.fspath(path), image):
        raise ValueError(f"{path}: the PNG could not be written")


def sequence_frames(root: str | os.PathLike) -> dict[str, list[str]]:
    """Lists the frames of every sequence folder under `root`.

    Returns:
        {sequence name: [frame file names]}, both sorted by name.

    Raises:
        LabelFileError: `root` is missing or holds no sequence folder with PNGs.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise LabelFileError(f"{root}: no such label folder")
    sequences = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == _SUFFIX)
        if frames:
            sequences[folder.name] = frames
    if not sequences:
        raise LabelFileError(f"{root}: holds no <sequence>/<frame>{_SUFFIX} label files")
    return sequences


def paired_frames(
    gt_dir: str | os.PathLike, pred_dir: str | os.PathLike
) -> Iterator[tuple[str, str, str]]:
    """Yields (sequence, ground-truth path, prediction path) for every ground-truth frame.

    Sequences come in name order and frames in name order within each sequence.

    Raises:
        LabelFileError: a folder is missing or empty, or a ground-truth frame has no
            prediction (the message names the missing file).
    """
    gt_root, pred_root = pathlib.Path(gt_dir), pathlib.Path(pred_dir)
    if not pred_root.is_dir():
        raise LabelFileError(f"{pred_root}: no such prediction folder")
    for sequence, frames in sequence_frames(gt_root).items():
        for frame in frames:
            pred_path = pred_root / sequence / frame
            if not pred_path.is_file():
                raise LabelFileError(
                    f"{pred_path}: missing prediction for ground-truth frame "
                    f"{gt_root / sequence / frame}"
                )
            yield sequence, str(gt_root / sequence / frame), str(pred_path)
