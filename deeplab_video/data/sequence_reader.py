"""Reads whole sequences, frame by frame and in order, from evaluation TFRecords.

Evaluation plays every video from its first to its last frame at full resolution, so it
reads the records directly rather than through the clip pipeline. The shards are streamed
in sorted order with the same checks as the pipeline's evaluation stream (a sequence's
records contiguous and in increasing frame order, corrupt files named), and frames are
decoded only when their sequence is consumed.
"""

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from deeplab_video.data import pipeline, tfrecord


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame of a sequence.

    Attributes:
        frame_index: the frame's number in its video.
        image: uint8 [height, width, 3] RGB.
        panoptic: int32 [height, width], semantic * label_divisor + instance.
    """

    frame_index: int
    image: np.ndarray
    panoptic: np.ndarray


_decode = tf.function(tfrecord.decode_frame)


def iter_sequences(file_patterns: Sequence[str]) -> Iterator[tuple[str, Iterator[Frame]]]:
    """Yields (sequence id, lazily decoded frames) for every sequence, in order.

    As with itertools.groupby, a sequence's frames must be consumed before the next
    sequence is requested; advancing skips (without decoding) what was not consumed.

    Args:
        file_patterns: glob patterns of the TFRecord shards.

    Raises:
        FileNotFoundError: no file matches.
        tfrecord.CorruptRecordError: a file is unreadable, a frame cannot be decoded, or a
            sequence is not contiguous or not in increasing frame order.
    """
    records = pipeline.iter_clips(
        pipeline.iter_frames(pipeline.list_files(file_patterns)), clip_length=1
    )
    frames = (clip[0] for clip in records)
    for sequence_id, group in itertools.groupby(frames, key=lambda f: f.sequence_id):
        yield sequence_id, (_decode_record(record) for record in group)


def read_sequences(file_patterns: Sequence[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields every sequence as whole arrays (holds one sequence in memory at a time).

    Args:
        file_patterns: glob patterns of the TFRecord shards.

    Yields:
        (sequence id, frames uint8 [num_frames, height, width, 3],
        panoptic int32 [num_frames, height, width]).

    Raises:
        FileNotFoundError, tfrecord.CorruptRecordError: as `iter_sequences`.
        ValueError: the frames of a sequence differ in size.
    """
    for sequence_id, frames in iter_sequences(file_patterns):
        frames = list(frames)
        sizes = {frame.image.shape for frame in frames}
        if len(sizes) > 1:
            raise ValueError(f"sequence '{sequence_id}' mixes frame sizes {sorted(sizes)}")
        yield (
            sequence_id,
            np.stack([frame.image for frame in frames]),
            np.stack([frame.panoptic for frame in frames]),
        )


def _decode_record(record: pipeline.FrameRecord) -> Frame:
    try:
        decoded = _decode(tf.constant(record.record))
    except tf.errors.InvalidArgumentError as e:
        raise tfrecord.CorruptRecordError(
            f"{record.path}: frame {record.frame_index} of sequence '{record.sequence_id}' "
            f"cannot be decoded: {e.message}"
        ) from e
    return Frame(
        frame_index=record.frame_index,
        image=decoded["image"].numpy(),
        panoptic=decoded["panoptic"].numpy(),
    )
