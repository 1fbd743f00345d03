"""Fixtures shared by the converter tests: reading shards back and checking the output."""

import os

import pytest
import tensorflow as tf

from deeplab_video.data import tfrecord


@pytest.fixture
def read_shards():
    """Returns a function that decodes every record of some shards, in file order."""

    def read(paths: list[str]) -> list[dict]:
        frames = []
        for path in paths:
            for record in tfrecord.read_records(path):
                decoded = tfrecord.decode_frame(tf.constant(record))
                frames.append(
                    {
                        "shard": os.path.basename(path),
                        "image": decoded["image"].numpy(),
                        "panoptic": decoded["panoptic"].numpy(),
                        "sequence_id": decoded["sequence_id"].numpy().decode(),
                        "frame_index": int(decoded["frame_index"].numpy()),
                    }
                )
        return frames

    return read


@pytest.fixture
def assert_no_output():
    """Returns a function asserting that a folder holds no shard and no temporary file."""

    def check(output_dir) -> None:
        left = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
        assert left == [], f"conversion left files behind: {left}"

    return check
