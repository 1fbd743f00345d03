"""Tests for deeplab_video.data.sequence_reader: whole sequences, in order, from shards."""

import numpy as np
import pytest

from deeplab_video.data import sequence_reader, tfrecord


def _frame(sequence: int, index: int, height: int = 5, width: int = 7):
    rng = np.random.default_rng(100 * sequence + index)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    panoptic = (rng.integers(0, 3, (height, width)) * 1000 + index).astype(np.int32)
    return image, panoptic


def _write(tmp_path, shards: list[list[tuple[str, int]]]) -> str:
    """Writes shards of (sequence id, frame index) records; returns the glob pattern."""
    with tfrecord.ShardedWriter(str(tmp_path), "val", len(shards)) as writer:
        for shard, records in enumerate(shards):
            for sequence_id, index in records:
                image, panoptic = _frame(int(sequence_id), index)
                writer.write(shard, tfrecord.encode_frame(image, panoptic, sequence_id, index))
    return str(tmp_path / "val-*.tfrecord")


def test_sequences_in_order_across_shards(tmp_path):
    # Sequence 0002 continues from the first shard into the second; frame 3 is skipped
    # (annotated subsets have gaps).
    pattern = _write(
        tmp_path,
        [[("0001", 0), ("0001", 1), ("0002", 0), ("0002", 1)], [("0002", 2), ("0002", 4)]],
    )
    sequences = list(sequence_reader.read_sequences([pattern]))
    assert [s[0] for s in sequences] == ["0001", "0002"]
    sequence_id, frames, panoptic = sequences[1]
    assert frames.dtype == np.uint8 and frames.shape == (4, 5, 7, 3)
    assert panoptic.dtype == np.int32 and panoptic.shape == (4, 5, 7)
    for position, index in enumerate([0, 1, 2, 4]):
        image, label = _frame(2, index)
        np.testing.assert_array_equal(frames[position], image)
        np.testing.assert_array_equal(panoptic[position], label)


def test_lazy_frames_carry_indices_and_skipping_works(tmp_path):
    pattern = _write(tmp_path, [[("0001", 0), ("0001", 1), ("0003", 5), ("0003", 6)]])
    iterator = sequence_reader.iter_sequences([pattern])
    first_id, _ = next(iterator)  # Not consumed: the next request skips it.
    second_id, frames = next(iterator)
    assert (first_id, second_id) == ("0001", "0003")
    assert [frame.frame_index for frame in frames] == [5, 6]
    assert next(iterator, None) is None


def test_non_contiguous_sequence_is_an_error(tmp_path):
    pattern = _write(tmp_path, [[("0001", 0), ("0002", 0), ("0001", 1)]])
    with pytest.raises(tfrecord.CorruptRecordError, match="reappears"):
        list(sequence_reader.read_sequences([pattern]))


def test_frames_out_of_order_are_an_error(tmp_path):
    pattern = _write(tmp_path, [[("0001", 2), ("0001", 1)]])
    with pytest.raises(tfrecord.CorruptRecordError, match="increasing order"):
        list(sequence_reader.read_sequences([pattern]))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord file matches"):
        list(sequence_reader.read_sequences([str(tmp_path / "nothing-*.tfrecord")]))
