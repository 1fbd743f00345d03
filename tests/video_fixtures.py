"""Writes real video files for tests (OpenCV cannot encode H.264; PyAV's libx264 can)."""

import pathlib

import av
import numpy as np


def write_h264(path: pathlib.Path, frames: list[np.ndarray], fps: int = 12) -> None:
    """Encodes uint8 [height, width, 3] RGB frames as an H.264 MP4 (yuv420p)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
