"""Tests for deeplab_video.data.video_io on real H.264 MP4 files and frame folders."""

import cv2
import numpy as np
import pytest

from deeplab_video.data import video_io
from tests import video_fixtures


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Distinct smooth frames: a bright square moving right over a gradient."""
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 2] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
        x = 4 + 6 * index
        frame[10:30, x : x + 20] = (250, 40, 40)
        frames.append(frame)
    return frames


def test_reads_h264_mp4(tmp_path):
    frames = _frames(7, 72, 96)
    path = tmp_path / "dashcam.mp4"
    video_fixtures.write_h264(path, frames)
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"h264"
    capture.release()
    decoded = list(video_io.read_frames(path))
    assert len(decoded) == 7
    for index, (original, frame) in enumerate(zip(frames, decoded, strict=True)):
        assert frame.dtype == np.uint8 and frame.shape == (72, 96, 3)
        # Lossy codec: the red square must still be red (RGB order, not BGR).
        assert np.abs(frame.astype(int) - original.astype(int)).mean() < 12
        square = frame[12:28, 6 + 6 * index : 20 + 6 * index]
        assert square[..., 0].mean() > 150 > square[..., 2].mean()
    info = video_io.probe(path)
    assert (info.height, info.width, info.num_frames) == (72, 96, 7)
    assert info.fps == pytest.approx(12, abs=0.5)


def test_reads_frame_folder_in_natural_order(tmp_path):
    frames = _frames(11, 40, 64)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame_{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("ignored")
    decoded = list(video_io.read_frames(tmp_path))
    assert len(decoded) == 11
    for original, frame in zip(frames, decoded, strict=True):
        np.testing.assert_array_equal(original, frame)
    assert video_io.probe(tmp_path).num_frames == 11


def test_errors_name_the_path(tmp_path):
    with pytest.raises(video_io.VideoInputError, match="missing.mp4"):
        list(video_io.read_frames(tmp_path / "missing.mp4"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(video_io.VideoInputError, match="holds no frames"):
        list(video_io.read_frames(empty))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 10)
    with pytest.raises(video_io.VideoInputError, match="broken.mp4"):
        list(video_io.read_frames(broken))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "0.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(mixed / "1.png"), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(video_io.VideoInputError, match="1.png"):
        list(video_io.read_frames(mixed))
