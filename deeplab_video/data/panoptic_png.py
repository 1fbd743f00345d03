"""KITTI-STEP's panoptic PNG encoding: R = semantic class, G * 256 + B = instance id.

Used to write predictions that the official KITTI-STEP tools (and our evaluation CLI)
read, and to write the synthetic dataset in the same on-disk format.
"""

import os

import cv2
import numpy as np

# The largest instance id the G and B channels can hold.
MAX_INSTANCE_ID = 256 * 256 - 1


class PanopticPngError(ValueError):
    """A panoptic map that cannot be written or a PNG that cannot be read as one."""


def encode(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    """Packs a panoptic map into KITTI-STEP's RGB layout.

    Args:
        panoptic: int [height, width], semantic * label_divisor + instance.
        label_divisor: the dataset's label divisor.

    Returns:
        uint8 [height, width, 3] RGB with R = semantic, G = instance // 256,
        B = instance % 256.

    Raises:
        PanopticPngError: a semantic id above 255 or an instance id above 65535.
    """
    semantic = panoptic // label_divisor
    instance = panoptic % label_divisor
    if semantic.max(initial=0) > 255 or semantic.min(initial=0) < 0:
        raise PanopticPngError("semantic ids must lie in 0..255 to fit the R channel")
    if instance.max(initial=0) > MAX_INSTANCE_ID:
        raise PanopticPngError(f"instance ids above {MAX_INSTANCE_ID} do not fit G*256+B")
    rgb = np.empty(panoptic.shape + (3,), np.uint8)
    rgb[..., 0] = semantic
    rgb[..., 1] = instance >> 8
    rgb[..., 2] = instance & 255
    return rgb


def decode(rgb: np.ndarray, label_divisor: int) -> np.ndarray:
    """Inverse of `encode`: uint8 [height, width, 3] RGB -> int32 [height, width]."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] * label_divisor + rgb[..., 1] * 256 + rgb[..., 2]


def write(path: str | os.PathLike, panoptic: np.ndarray, label_divisor: int) -> None:
    """Writes one panoptic map as a KITTI-STEP PNG (parent folders are created)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rgb = encode(panoptic, label_divisor)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise PanopticPngError(f"{path}: cannot be written")


def read(path: str | os.PathLike, label_divisor: int) -> np.ndarray:
    """Reads a KITTI-STEP panoptic PNG into int32 [height, width].

    Raises:
        PanopticPngError: the file is missing or not a 3-channel 8-bit image.
    """
    path = os.fspath(path)
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PanopticPngError(f"{path}: missing or not an image")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PanopticPngError(f"{path}: expected an 8-bit RGB PNG, got shape {image.shape}")
    return decode(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label_divisor)
