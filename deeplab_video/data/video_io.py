"""Reads the frames of a video file or of a folder of images, in order.

Inference takes ordinary videos: an H.264 / HEVC / MPEG-4 file from a phone or a dashcam
(any resolution and length; OpenCV's FFmpeg backend decodes it and applies the rotation
stored in the file), or a folder of frames (PNG / JPEG / BMP / WebP, played in natural
sort order so that `frame_2.png` comes before `frame_10.png`).
"""

import dataclasses
import os
import pathlib
import re
from collections.abc import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Frame rate assumed for a folder of frames (and for files that do not state one).
DEFAULT_FPS = 10.0


class VideoInputError(ValueError):
    """A video file or frame folder that cannot be read; the message names the path."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What is known about a video before decoding it.

    Attributes:
        path: the file or folder.
        num_frames: frame count (a container's count may be an estimate).
        fps: frames per second.
        height: frame height in pixels.
        width: frame width in pixels.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int


def probe(path: str | os.PathLike) -> VideoInfo:
    """Returns the size, length and frame rate of a video file or frame folder.

    Raises:
        VideoInputError: the path is missing, holds no frames, or cannot be decoded.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _frame_files(path)
        first = _read_image(files[0])
        return VideoInfo(path, len(files), DEFAULT_FPS, first.shape[0], first.shape[1])
    capture = _open_capture(path)
    try:
        ok, frame = capture.read()
        if not ok:
            raise VideoInputError(f"{path}: the video holds no decodable frame")
        fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return VideoInfo(path, max(count, 1), float(fps), frame.shape[0], frame.shape[1])
    finally:
        capture.release()


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yields the frames of a video file or frame folder, in order.

    Args:
        path: a video file (anything FFmpeg decodes, e.g. H.264 MP4) or a folder of images.

    Yields:
        uint8 [height, width, 3] RGB frames. A folder's frames must all have one size.

    Raises:
        VideoInputError: missing path, empty folder, undecodable file or frame, or a frame
            whose size differs from the first one (the message names the file).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        yield from _read_folder(path)
    else:
        yield from _read_file(path)


def _read_file(path: str) -> Iterator[np.ndarray]:
    capture = _open_capture(path)
    try:
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise VideoInputError(f"{path}: the video holds no decodable frame")
    finally:
        capture.release()


def _read_folder(path: str) -> Iterator[np.ndarray]:
    expected_shape = None
    for file in _frame_files(path):
        frame = _read_image(file)
        if expected_shape is None:
            expected_shape = frame.shape
        elif frame.shape != expected_shape:
            raise VideoInputError(
                f"{file}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the "
                f"folder's first frame ({expected_shape[1]}x{expected_shape[0]})"
            )
        yield frame


def _open_capture(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise VideoInputError(f"{path}: no such video file or frame folder")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoInputError(f"{path}: cannot be opened as a video (unknown format?)")
    return capture


def _frame_files(folder: str) -> list[str]:
    files = [
        str(p)
        for p in pathlib.Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise VideoInputError(f"{folder}: the folder holds no frames ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=_natural_key)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_image(file: str) -> np.ndarray:
    image = cv2.imread(file, cv2.IMREAD_COLOR)
    if image is None:
        raise VideoInputError(f"{file}: cannot be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
