"""The TFRecord schema of deeplab-video: one `tf.train.Example` per video frame.

The feature keys and the label encoding are those of DeepLab2's STEP converter
(deeplab2/data/build_step_data.py and data_utils.create_video_tfexample), so shards written by
DeepLab2 load unchanged and ours load in DeepLab2:

    image/encoded                     bytes   PNG or JPEG RGB frame
    image/format                      bytes   "png" or "jpeg"
    image/filename                    bytes   e.g. "000012.png"
    image/height, image/width         int64
    image/channels                    int64   always 3
    image/segmentation/class/encoded  bytes   raw little-endian int32 [height, width] panoptic
                                              label, semantic * label_divisor + instance
    image/segmentation/class/format   bytes   "raw"
    video/sequence_id                 bytes   e.g. "0003"
    video/frame_id                    bytes   zero-padded frame number, e.g. "000012"

Shards are named `{split}-{index:05d}-of-{count:05d}.tfrecord` (as DeepLab2 names them) and
are written under a temporary name that is renamed only once every shard is complete.
"""

import os
import types
from collections.abc import Iterator

import cv2
import numpy as np
import tensorflow as tf
from google.protobuf import message

KEY_ENCODED_IMAGE = "image/encoded"
KEY_IMAGE_FORMAT = "image/format"
KEY_IMAGE_FILENAME = "image/filename"
KEY_IMAGE_HEIGHT = "image/height"
KEY_IMAGE_WIDTH = "image/width"
KEY_IMAGE_CHANNELS = "image/channels"
KEY_ENCODED_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"
KEY_SEQUENCE_ID = "video/sequence_id"
KEY_FRAME_ID = "video/frame_id"

# DeepLab2 stores panoptic labels as raw int32 bytes and names frames with six digits.
LABEL_FORMAT_RAW = "raw"
FRAME_ID_DIGITS = 6
IMAGE_FORMATS = ("png", "jpeg")
SHARD_NAME_FORMAT = "{split}-{index:05d}-of-{count:05d}.tfrecord"


class CorruptRecordError(ValueError):
    """A TFRecord shard that cannot be read; the message names the file."""


def frame_id_string(frame_index: int) -> str:
    """Returns DeepLab2's zero-padded frame id, e.g. 12 -> "000012"."""
    return f"{frame_index:0{FRAME_ID_DIGITS}d}"


def encode_frame(
    image: np.ndarray,
    panoptic: np.ndarray,
    sequence_id: str,
    frame_index: int,
    image_format: str = "png",
) -> bytes:
    """Serializes one frame and its panoptic label as a DeepLab2-style `tf.train.Example`.

    Args:
        image: uint8 [height, width, 3] RGB frame.
        panoptic: integer [height, width] label, semantic * label_divisor + instance.
        sequence_id: the video the frame belongs to.
        frame_index: the frame's number inside its video (>= 0).
        image_format: "png" (lossless) or "jpeg".

    Returns:
        The serialized Example.

    Raises:
        ValueError: wrong image or label shape or dtype, unknown format, negative index.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [height, width, 3], got {image.dtype} {image.shape}")
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"panoptic shape {panoptic.shape} differs from image {image.shape[:2]}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got '{image_format}'")
    if frame_index < 0:
        raise ValueError(f"frame_index must be >= 0, got {frame_index}")
    extension = ".png" if image_format == "png" else ".jpg"
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode the frame as {image_format}")
    frame_id = frame_id_string(frame_index)
    label = np.ascontiguousarray(panoptic, dtype="<i4").tobytes()
    height, width = image.shape[:2]

    def bytes_feature(value: bytes | str) -> tf.train.Feature:
        value = value.encode() if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        KEY_ENCODED_IMAGE: bytes_feature(encoded.tobytes()),
        KEY_IMAGE_FORMAT: bytes_feature(image_format),
        KEY_IMAGE_FILENAME: bytes_feature(frame_id + extension),
        KEY_IMAGE_HEIGHT: int_feature(height),
        KEY_IMAGE_WIDTH: int_feature(width),
        KEY_IMAGE_CHANNELS: int_feature(3),
        KEY_ENCODED_LABEL: bytes_feature(label),
        KEY_LABEL_FORMAT: bytes_feature(LABEL_FORMAT_RAW),
        KEY_SEQUENCE_ID: bytes_feature(sequence_id),
        KEY_FRAME_ID: bytes_feature(frame_id),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def shard_path(output_dir: str, split: str, index: int, count: int) -> str:
    """Returns the path of shard `index` of `count` of a split."""
    return os.path.join(output_dir, SHARD_NAME_FORMAT.format(split=split, index=index, count=count))


class ShardedWriter:
    """Writes records into `count` shards of a split; all-or-nothing.

    Every shard is written under a temporary name; leaving the `with` block normally
    renames all of them to their final names, leaving it with an exception deletes them,
    so a failed run never leaves a half-written shard that a file pattern would match.

    Example:
        with ShardedWriter(output_dir, "train", num_shards=4) as writer:
            writer.write(shard_index, encode_frame(...))
        writer.paths  # the final shard paths
    """

    def __init__(self, output_dir: str, split: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self.paths = [shard_path(output_dir, split, i, num_shards) for i in range(num_shards)]
        self._temporary = [f"{path}.tmp-{os.getpid()}" for path in self.paths]
        self._writers: list[tf.io.TFRecordWriter] = []
        tf.io.gfile.makedirs(output_dir)

    def __enter__(self) -> "ShardedWriter":
        self._writers = [tf.io.TFRecordWriter(path) for path in self._temporary]
        return self

    def write(self, shard_index: int, record: bytes) -> None:
        """Appends one serialized record to a shard."""
        self._writers[shard_index].write(record)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        for writer in self._writers:
            writer.close()
        for temporary, final in zip(self._temporary, self.paths, strict=True):
            if exc_type is None:
                tf.io.gfile.rename(temporary, final, overwrite=True)
            elif tf.io.gfile.exists(temporary):
                tf.io.gfile.remove(temporary)


def read_records(path: str) -> Iterator[bytes]:
    """Yields the serialized records of one TFRecord file, in order.

    Raises:
        CorruptRecordError: the file is missing, truncated or fails its checksums; unlike
            tf.data's own error, the message names the file.
    """
    try:
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()
    except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
        raise CorruptRecordError(f"cannot read TFRecord file {path}: {e.message}") from e


def read_frame_key(record: bytes, path: str) -> tuple[str, int]:
    """Returns (sequence id, frame index) of a serialized frame, parsed on the host.

    Args:
        record: a serialized Example of the schema above.
        path: the file the record came from (named in errors).

    Raises:
        CorruptRecordError: the record is not an Example or lacks the video keys.
    """
    try:
        features = tf.train.Example.FromString(record).features.feature
        sequence_id = features[KEY_SEQUENCE_ID].bytes_list.value[0].decode()
        frame_index = int(features[KEY_FRAME_ID].bytes_list.value[0])
    except (message.DecodeError, IndexError, ValueError) as e:
        raise CorruptRecordError(
            f"{path}: a record is not a video frame Example with '{KEY_SEQUENCE_ID}' and a "
            f"numeric '{KEY_FRAME_ID}' ({type(e).__name__}: {e})"
        ) from e
    return sequence_id, frame_index


def decode_frame(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decodes one serialized frame inside a tf.data map (graph mode).

    Args:
        serialized: string scalar, a record of the schema above (ours or DeepLab2's).

    Returns:
        A dict with
          'image': uint8 [height, width, 3],
          'panoptic': int32 [height, width],
          'height', 'width': int32 scalars,
          'sequence_id': string scalar,
          'frame_index': int32 scalar (the frame id string parsed as a number),
          'filename': string scalar.
    """
    string = tf.io.FixedLenFeature((), tf.string)
    integer = tf.io.FixedLenFeature((), tf.int64)
    parsed = tf.io.parse_single_example(
        serialized,
        {
            KEY_ENCODED_IMAGE: string,
            KEY_IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
            KEY_IMAGE_HEIGHT: integer,
            KEY_IMAGE_WIDTH: integer,
            KEY_ENCODED_LABEL: string,
            KEY_SEQUENCE_ID: string,
            KEY_FRAME_ID: string,
        },
    )
    image = tf.io.decode_image(
        parsed[KEY_ENCODED_IMAGE], channels=3, dtype=tf.uint8, expand_animations=False
    )
    image.set_shape([None, None, 3])
    height = tf.cast(parsed[KEY_IMAGE_HEIGHT], tf.int32)
    width = tf.cast(parsed[KEY_IMAGE_WIDTH], tf.int32)
    check_size = tf.debugging.Assert(
        tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.stack([height, width]))),
        [
            "decoded image size differs from image/height, image/width in sequence",
            parsed[KEY_SEQUENCE_ID],
            "frame",
            parsed[KEY_FRAME_ID],
        ],
    )
    with tf.control_dependencies([check_size]):
        label = tf.io.decode_raw(parsed[KEY_ENCODED_LABEL], tf.int32)
    panoptic = tf.reshape(label, [height, width])
    return {
        "image": image,
        "panoptic": panoptic,
        "height": height,
        "width": width,
        "sequence_id": parsed[KEY_SEQUENCE_ID],
        "frame_index": tf.strings.to_number(parsed[KEY_FRAME_ID], out_type=tf.int32),
        "filename": parsed[KEY_IMAGE_FILENAME],
    }
