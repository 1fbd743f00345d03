"""The tf.data pipeline of clips: T frames of one sequence, augmented alike, with tube targets.

Records hold one frame each (deeplab_video.data.tfrecord, DeepLab2's STEP schema). Clips are
formed on the host while the records stream by, before any image is decoded:

  * Files are read whole and in order by a Python generator (tf.data.from_generator), which
    parses only the sequence id and frame id of each record. Reading through Python costs
    a fraction of a millisecond per record, next to image decoding, and buys an error that
    names the shard: tf.data's own reader reports a corrupt record without its file. (The
    generator runs in the input pipeline's Python process, so the dataset cannot be
    shipped to tf.data service or to a remote TPU host.)
  * The records of one sequence must be contiguous and in increasing frame order in that
    stream (DeepLab2's converter and ours write them so; a sequence may continue into the
    next shard). A sequence that reappears later, or a frame that goes backwards, raises
    CorruptRecordError naming the file.
  * A clip is T consecutive records of one sequence, taken every `frame_step`-th record in
    training (every record in evaluation). Clips never cross sequences. Gaps in frame
    numbering are allowed (VIPSeg and other datasets annotate a subsampled set of frames):
    "consecutive" means consecutive annotated frames, and FRAME_INDEX reports the real
    frame numbers. Sequences with fewer records than a clip spans yield no clip (logged).
  * Training: every start position is a clip. Each file is its own stream and the files are
    interleaved (in a reshuffled order every epoch), so batches mix sequences; a clip that
    would cross from one shard into the next is therefore not formed (at most span - 1
    clips per split sequence; the synthetic writer never splits one). Clips are shuffled
    (shuffle_buffer_size), repeated, then decoded and augmented in a parallel map.
  * Training with augmentations.frame_sampling_range R > 0 and T > 1 (the official
    Video-kMaX sampler): every record is the reference of one clip; the stream yields the
    records at most R away from it in its sequence (and in its shard), and a seeded map
    draws the other T - 1 frames among them without repetition before the shuffle, so only
    the T chosen records wait in the shuffle buffer. The draws differ from epoch to epoch.
  * Training with augmentations.copy_paste_probability > 0: a second, independently
    shuffled stream of training clips supplies donors; a clip chosen for copy-paste gets a
    random subset of its donor's segments (deeplab_video.data.copy_paste) after both
    clips are augmented, the donor at copy_paste_scale_ratio times the scale range.
  * Evaluation: all files form one stream in sorted order, so nothing is lost at shard
    boundaries. Clips start every common.clip_stride(T) = max(T - 1, 1) records
    (near-online clips share one frame) and every clip has exactly T frames: when the last
    stride position does not reach the end of a sequence, one more clip starting at
    length - T covers its last frames (it overlaps its predecessor by more than usual).
    Frames are only padded bottom/right to crop_size.
  * In both modes, frames are first resized when min_resize_value / max_resize_value are
    set (DeepLab2's resize_to_range); ORIGINAL_SIZE is the size before that.

With an input context, clips (not files, since sequences span files) are sharded over the
input pipelines, and the batch is the per-replica batch. Element order is deterministic in
evaluation always and in training when options.deterministic is set (then shuffling and
augmentation are seeded with options.seed).
"""

import atexit
import collections
import dataclasses
import functools
import gc
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_video import common
from deeplab_video.data import clip_parser, tfrecord
from deeplab_video.protos import dataset_pb2

# An iterator over a from_generator dataset must be destroyed while Python can still run
# the generator. Left to the collection at interpreter exit (as anything reachable only
# through a reference cycle is, e.g. a trainer's iterator), its destructor waits forever
# for a prefetch thread caught inside the generator, and the process hangs after its last
# step; otherwise tf.data warns "Error occurred when finalizing GeneratorDataset iterator".
# Collecting at exit, before the interpreter shuts down, destroys such iterators in time.
atexit.register(gc.collect)


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """One serialized frame and where it came from."""

    sequence_id: str
    frame_index: int
    record: bytes
    path: str


def list_files(patterns: Sequence[str]) -> list[str]:
    """Returns the sorted, de-duplicated files matching any of the glob patterns.

    Raises:
        FileNotFoundError: no pattern matches a file.
    """
    files = sorted({path for pattern in patterns for path in tf.io.gfile.glob(pattern)})
    if not files:
        raise FileNotFoundError(
            f"no TFRecord file matches file_pattern {list(patterns)}; generate the dataset "
            "or fix the pattern (relative patterns are resolved from the working directory)"
        )
    return files


def iter_frames(paths: Iterable[str]) -> Iterator[FrameRecord]:
    """Yields the frames of the files in order, with their sequence and frame ids.

    Raises:
        tfrecord.CorruptRecordError: a file cannot be read or holds a malformed record.
    """
    for path in paths:
        for record in tfrecord.read_records(path):
            sequence_id, frame_index = tfrecord.read_frame_key(record, path)
            yield FrameRecord(sequence_id, frame_index, record, path)


def _iter_checked(frames: Iterable[FrameRecord]) -> Iterator[tuple[FrameRecord, bool]]:
    """Yields each frame with whether it starts a sequence, checking the stream's order.

    Raises:
        tfrecord.CorruptRecordError: a sequence is not contiguous or not in frame order.
    """
    seen: set[str] = set()
    previous: FrameRecord | None = None
    for frame in frames:
        starts = previous is None or frame.sequence_id != previous.sequence_id
        if starts:
            if frame.sequence_id in seen:
                raise tfrecord.CorruptRecordError(
                    f"{frame.path}: sequence '{frame.sequence_id}' reappears after other "
                    "sequences; the records of a sequence must be contiguous and in frame "
                    "order across the sorted shards (as DeepLab2's STEP converter writes them)"
                )
            seen.add(frame.sequence_id)
        elif frame.frame_index <= previous.frame_index:
            raise tfrecord.CorruptRecordError(
                f"{frame.path}: frame {frame.frame_index} of sequence '{frame.sequence_id}' "
                f"comes after frame {previous.frame_index}; frames must be in increasing order"
            )
        yield frame, starts
        previous = frame


def _log_short_sequence(sequence_id: str, length: int, span: int) -> None:
    logging.warning(
        "sequence '%s' has %d frames, fewer than a clip spans (%d): no clip uses it",
        sequence_id,
        length,
        span,
    )


def iter_clips(
    frames: Iterable[FrameRecord],
    *,
    clip_length: int,
    frame_step: int = 1,
    stride: int = 1,
    cover_end: bool = False,
) -> Iterator[list[FrameRecord]]:
    """Groups a stream of frames into clips of `clip_length` frames of one sequence.

    Args:
        frames: frames with each sequence's records contiguous and in frame order.
        clip_length: T, frames per clip.
        frame_step: a clip takes every frame_step-th record of its sequence.
        stride: clips start every `stride` records of a sequence.
        cover_end: also emit the clip ending at the sequence's last record when the stride
            positions miss it (evaluation).

    Yields:
        Lists of T frames in order.

    Raises:
        tfrecord.CorruptRecordError: a sequence is not contiguous or not in frame order.
    """
    span = (clip_length - 1) * frame_step + 1
    window: collections.deque[FrameRecord] = collections.deque(maxlen=span)
    length = last_start = 0

    def take() -> list[FrameRecord]:
        return [window[i * frame_step] for i in range(clip_length)]

    def end_of_sequence() -> Iterator[list[FrameRecord]]:
        if length < span:
            _log_short_sequence(window[-1].sequence_id, length, span)
        elif cover_end and last_start != length - span:
            yield take()

    for frame, starts_sequence in _iter_checked(frames):
        if starts_sequence:
            if window:
                yield from end_of_sequence()
            window.clear()
            length, last_start = 0, -1
        window.append(frame)
        length += 1
        if length >= span and (length - span) % stride == 0:
            last_start = length - span
            yield take()
    if window:
        yield from end_of_sequence()


def iter_windows(
    frames: Iterable[FrameRecord], *, clip_length: int, radius: int
) -> Iterator[tuple[list[FrameRecord], int]]:
    """For every frame, the frames of its sequence at most `radius` records away.

    Args:
        frames: frames with each sequence's records contiguous and in frame order.
        clip_length: T; sequences of fewer records yield nothing (logged).
        radius: R, the frame sampling range.

    Yields:
        (window, reference): the records from max(0, p - R) to min(length - 1, p + R) of
        the sequence, in order, for each record position p, and p's index in the window.

    Raises:
        ValueError: radius < clip_length - 1 (a window could hold fewer than T records).
        tfrecord.CorruptRecordError: a sequence is not contiguous or not in frame order.
    """
    if radius < clip_length - 1:
        raise ValueError(
            f"frame_sampling_range {radius} must be at least clip_length - 1 = {clip_length - 1}"
        )
    window: collections.deque[FrameRecord] = collections.deque(maxlen=2 * radius + 1)
    length = next_reference = 0

    def emit(reference: int) -> tuple[list[FrameRecord], int]:
        first_held = length - len(window)
        start = max(reference - radius, 0)
        return list(window)[start - first_held :], reference - start

    def end_of_sequence() -> Iterator[tuple[list[FrameRecord], int]]:
        if length < clip_length:
            _log_short_sequence(window[-1].sequence_id, length, clip_length)
            return
        for reference in range(next_reference, length):
            yield emit(reference)

    for frame, starts_sequence in _iter_checked(frames):
        if starts_sequence:
            if window:
                yield from end_of_sequence()
            window.clear()
            length = next_reference = 0
        window.append(frame)
        length += 1
        if length - 1 - radius == next_reference:
            yield emit(next_reference)
            next_reference += 1
    if window:
        yield from end_of_sequence()


def sample_clip_frames(
    num_records: tf.Tensor, reference: tf.Tensor, clip_length: int, seed: tf.Tensor
) -> tf.Tensor:
    """Draws a clip's frames in a window: the reference and T - 1 others, no repetition.

    Args:
        num_records: int32 [], the window's size (at least clip_length).
        reference: int32 [], the reference's position in the window.
        clip_length: T.
        seed: int32 or int64 [2], stateless random seed.

    Returns:
        int32 [clip_length], increasing positions in the window, one of them `reference`.
    """
    others = tf.concat([tf.range(reference), tf.range(reference + 1, num_records)], 0)
    keys = tf.random.stateless_uniform(tf.shape(others), seed)
    picked = tf.gather(others, tf.argsort(keys)[: clip_length - 1])
    positions = tf.sort(tf.concat([picked, [reference]], 0))
    return tf.ensure_shape(positions, [clip_length])


def _generate_clips(paths: np.ndarray, **clip_args) -> Iterator[list[bytes]]:
    """from_generator body: the serialized records of every clip of the files."""
    frames = iter_frames(path.decode() for path in paths)
    for clip in iter_clips(frames, **clip_args):
        yield [frame.record for frame in clip]


def _clip_records(paths: tf.Tensor, clip_length: int, **clip_args) -> tf.data.Dataset:
    """A dataset of string [clip_length] record tuples, one per clip of the files."""
    return tf.data.Dataset.from_generator(
        functools.partial(_generate_clips, clip_length=clip_length, **clip_args),
        args=(paths,),
        output_signature=tf.TensorSpec([clip_length], tf.string),
    )


def _generate_windows(paths: np.ndarray, **window_args) -> Iterator[tuple[list[bytes], int]]:
    """from_generator body: (window records, reference position) for every record."""
    frames = iter_frames(path.decode() for path in paths)
    for window, reference in iter_windows(frames, **window_args):
        yield [frame.record for frame in window], reference


def _window_records(paths: tf.Tensor, clip_length: int, radius: int) -> tf.data.Dataset:
    """A dataset of (string [window] records, int32 [] reference), one per record."""
    return tf.data.Dataset.from_generator(
        functools.partial(_generate_windows, clip_length=clip_length, radius=radius),
        args=(paths,),
        output_signature=(tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)),
    )


def _draw_clips(windows: tf.data.Dataset, clip_length: int, seed: int | None) -> tf.data.Dataset:
    """Draws the frames of each window's clip: string [clip_length] records per window.

    The draws are seeded per window and differ from one pass over the data to the next.
    """
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def draw(window: tuple[tf.Tensor, tf.Tensor], draw_seed: tf.Tensor) -> tf.Tensor:
        records, reference = window
        positions = sample_clip_frames(tf.size(records), reference, clip_length, draw_seed)
        return tf.gather(records, positions)

    return tf.data.Dataset.zip((windows, draws)).map(draw)


def _training_clip_records(
    paths: list[str],
    options: dataset_pb2.DatasetOptions,
    input_context: tf.distribute.InputContext | None,
    seed_offset: int,
) -> tf.data.Dataset:
    """The shuffled (and repeated) stream of training clips as string [T] records.

    seed_offset makes an independent stream (the copy-paste donors) from the same files.
    """
    seed = options.seed + seed_offset if options.deterministic else None
    # Input pipelines must agree on the file order for their clip shards to partition
    # the clips, so the file shuffle is seeded whenever there are several.
    file_seed = options.seed + seed_offset if input_context is not None else seed
    files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=file_seed)
    radius = options.augmentations.frame_sampling_range
    sampled = radius > 0 and options.clip_length > 1

    def file_stream(path: tf.Tensor) -> tf.data.Dataset:
        if sampled:
            return _window_records(tf.reshape(path, [1]), options.clip_length, radius)
        return _clip_records(
            tf.reshape(path, [1]), options.clip_length, frame_step=options.frame_step
        )

    clips = files.interleave(
        file_stream,
        cycle_length=len(paths),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if sampled:
        clips = _draw_clips(clips, options.clip_length, seed)
    if input_context is not None:
        clips = clips.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    clips = clips.shuffle(options.shuffle_buffer_size, seed=seed)
    return clips.repeat() if options.repeat else clips


def build_clip_dataset(
    options: dataset_pb2.DatasetOptions,
    is_training: bool,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the dataset of batched clips described in the module docstring.

    Args:
        options: dataset, file_pattern, batch_size (global), crop_size [height, width],
            clip_length, frame_step, augmentations (including frame
            sampling range, colour jitter and copy-paste), tube settings,
            shuffle_buffer_size, repeat, deterministic and seed.
        is_training: augment, shuffle and repeat (else: pad only, sequences in order).
        input_context: from tf.distribute; the batch becomes the per-replica batch and the
            clips are sharded over the input pipelines.

    Returns:
        A dataset of dicts (B = batch, static when training; h, w = (crop - 1) // stride + 1):
          common.IMAGE: float32 [B, T, crop_height, crop_width, 3], values 0..255,
          common.PANOPTIC: int32 [B, T, crop_height, crop_width],
          common.SEMANTIC: int32 [B, T, crop_height, crop_width],
          common.SEQUENCE_ID: string [B],
          common.FRAME_INDEX: int32 [B, T],
          common.ORIGINAL_SIZE: int32 [B, 2], frame size before resizing and padding,
          common.TUBE_MASKS: float32 [B, T, h, w, max_tubes_per_clip],
          common.TUBE_CLASSES: int32 [B, max_tubes_per_clip],
          common.TUBE_VALID: float32 [B, max_tubes_per_clip],
          common.VOID_MASK: float32 [B, T, h, w],
          common.SEMANTIC_STRIDED: int32 [B, T, h, w].

    Raises:
        ValueError: crop_size is not [height, width] or clip_length < 1.
        KeyError: unknown dataset name.
        FileNotFoundError: file_pattern matches nothing.
    """
    if len(options.crop_size) != 2:
        raise ValueError(f"crop_size must be [height, width], got {list(options.crop_size)}")
    if options.clip_length < 1 or options.frame_step < 1:
        raise ValueError("clip_length and frame_step must be >= 1")
    paths = list_files(options.file_pattern)
    batch_size = options.batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    seed = options.seed if options.deterministic else None
    if is_training:
        clips = _training_clip_records(paths, options, input_context, seed_offset=0)
    else:
        clips = _clip_records(
            tf.constant(paths),
            options.clip_length,
            stride=common.clip_stride(options.clip_length),
            cover_end=True,
        )
        if input_context is not None:
            clips = clips.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    streams = (clips, seeds)
    if is_training and options.augmentations.copy_paste_probability > 0:
        streams += (_training_clip_records(paths, options, input_context, seed_offset=1),)
    dataset = tf.data.Dataset.zip(streams).map(
        clip_parser.make_clip_parser(options, is_training),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    data_options = tf.data.Options()
    # Evaluation always keeps the order: stitching and tracking play sequences in order.
    data_options.deterministic = options.deterministic or not is_training
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(data_options)
