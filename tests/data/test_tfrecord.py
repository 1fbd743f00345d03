"""Tests for deeplab_video.data.tfrecord, including records built the way DeepLab2 builds them."""

import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.data import pipeline, tfrecord
from deeplab_video.protos import dataset_pb2


def _frame(seed: int, height: int = 12, width: int = 20):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    panoptic = rng.choice([0, 1000, 13 * 1000 + 2, 11 * 1000 + 417, 255 * 1000], (height, width))
    return image, panoptic.astype(np.int32)


def _deeplab2_step_example(image, panoptic, sequence_id: str, frame_id: str) -> bytes:
    """A record as deeplab2/data/build_step_data.py writes it, field by field.

    Written independently of tfrecord.encode_frame: literal keys, PNG from TF, label as the
    native int32 bytes of semantic * 1000 + instance (DeepLab2 uses ndarray.tobytes()).
    """

    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def integer(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        "image/encoded": raw(tf.io.encode_png(image).numpy()),
        "image/filename": text(frame_id + ".png"),
        "image/format": text("png"),
        "image/height": integer(image.shape[0]),
        "image/width": integer(image.shape[1]),
        "image/channels": integer(3),
        "image/segmentation/class/encoded": raw(panoptic.astype(np.int32).tobytes()),
        "image/segmentation/class/format": text("raw"),
        "video/sequence_id": text(sequence_id),
        "video/frame_id": text(frame_id),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_decodes_a_deeplab2_step_record():
    image, panoptic = _frame(0)
    record = _deeplab2_step_example(image, panoptic, "0003", "000012")
    decoded = tfrecord.decode_frame(tf.constant(record))
    np.testing.assert_array_equal(decoded["image"], image)
    np.testing.assert_array_equal(decoded["panoptic"], panoptic)
    assert decoded["panoptic"].dtype == tf.int32
    assert decoded["sequence_id"].numpy() == b"0003"
    assert decoded["frame_index"].numpy() == 12 and decoded["frame_index"].dtype == tf.int32
    assert (decoded["height"].numpy(), decoded["width"].numpy()) == (12, 20)
    assert decoded["filename"].numpy() == b"000012.png"
    assert tfrecord.read_frame_key(record, "x.tfrecord") == ("0003", 12)


def test_encoder_writes_deeplab2_fields():
    image, panoptic = _frame(1)
    record = tfrecord.encode_frame(image, panoptic, "0007", 42)
    ours = tf.train.Example.FromString(record).features.feature
    theirs = tf.train.Example.FromString(
        _deeplab2_step_example(image, panoptic, "0007", "000042")
    ).features.feature
    assert set(ours) == set(theirs)
    for key in theirs:
        if key != "image/encoded":  # PNG encoders may compress differently
            assert ours[key] == theirs[key], key
    decoded = tfrecord.decode_frame(tf.constant(record))
    np.testing.assert_array_equal(decoded["image"], image)
    np.testing.assert_array_equal(decoded["panoptic"], panoptic)
    assert decoded["frame_index"].numpy() == 42


def test_jpeg_round_trip_is_close():
    image = np.full((16, 24, 3), (40, 120, 200), np.uint8)
    record = tfrecord.encode_frame(image, np.zeros((16, 24), np.int32), "0", 0, image_format="jpeg")
    features = tf.train.Example.FromString(record).features.feature
    assert features["image/format"].bytes_list.value == [b"jpeg"]
    decoded = tfrecord.decode_frame(tf.constant(record))["image"].numpy().astype(int)
    assert np.abs(decoded - image).max() <= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": np.zeros((4, 5, 3), np.float32)}, "uint8"),
        ({"panoptic": np.zeros((4, 6), np.int32)}, "differs"),
        ({"image_format": "bmp"}, "image_format"),
        ({"frame_index": -1}, "frame_index"),
    ],
)
def test_encoder_rejects_bad_input(kwargs, message):
    args = {
        "image": np.zeros((4, 5, 3), np.uint8),
        "panoptic": np.zeros((4, 5), np.int32),
        "sequence_id": "0",
        "frame_index": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        tfrecord.encode_frame(**args)


def test_sharded_writer_renames_only_on_success(tmp_path):
    with tfrecord.ShardedWriter(str(tmp_path), "train", num_shards=2) as writer:
        writer.write(0, b"a")
        writer.write(1, b"b")
        writer.write(1, b"c")
    assert sorted(os.listdir(tmp_path)) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert list(tfrecord.read_records(writer.paths[1])) == [b"b", b"c"]

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError), tfrecord.ShardedWriter(str(failed), "val", 3) as writer:
        writer.write(0, b"a")
        raise RuntimeError("converter crashed")
    assert os.listdir(failed) == []


def test_corrupt_file_error_names_the_file(tmp_path):
    path = str(tmp_path / "val-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(3):
            writer.write(tfrecord.encode_frame(*_frame(index), "0", index))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(tfrecord.CorruptRecordError, match="val-00000-of-00001.tfrecord"):
        list(tfrecord.read_records(path))
    with pytest.raises(tfrecord.CorruptRecordError, match="nothing-here.tfrecord"):
        list(tfrecord.read_records(str(tmp_path / "nothing-here.tfrecord")))
    with pytest.raises(tfrecord.CorruptRecordError, match="some.tfrecord.*frame_id"):
        tfrecord.read_frame_key(b"not a proto \xff", "some.tfrecord")


def test_deeplab2_shards_load_through_the_pipeline(tmp_path):
    # Two sequences, written evenly over two shards as DeepLab2 does (sequence 0001 spans
    # both shards). Evaluation clips of 3 frames start every 2 frames; the last clip of a
    # sequence ends at its last frame. Every frame must come back exactly as recorded.
    frames = [("0000", i) for i in range(3)] + [("0001", i) for i in range(4)]
    records = {key: _frame(10 + n) for n, key in enumerate(frames)}
    for shard, keys in enumerate([frames[:4], frames[4:]]):
        with tf.io.TFRecordWriter(str(tmp_path / f"val-{shard:05d}-of-00002.tfrecord")) as w:
            for sequence, index in keys:
                image, panoptic = records[(sequence, index)]
                w.write(_deeplab2_step_example(image, panoptic, sequence, f"{index:06d}"))
    options = dataset_pb2.DatasetOptions(
        dataset="kitti_step",
        file_pattern=[str(tmp_path / "val-*.tfrecord")],
        batch_size=1,
        crop_size=[33, 33],
        clip_length=3,
    )
    elements = list(pipeline.build_clip_dataset(options, is_training=False))
    clips = [
        (e[common.SEQUENCE_ID][0].numpy().decode(), list(e[common.FRAME_INDEX][0].numpy()))
        for e in elements
    ]
    assert clips == [("0000", [0, 1, 2]), ("0001", [0, 1, 2]), ("0001", [1, 2, 3])]
    for element, (sequence, indices) in zip(elements, clips, strict=True):
        for t, index in enumerate(indices):
            image, panoptic = records[(sequence, index)]
            np.testing.assert_array_equal(element[common.IMAGE][0, t, :12, :20], image)
            np.testing.assert_array_equal(element[common.PANOPTIC][0, t, :12, :20], panoptic)
        np.testing.assert_array_equal(element[common.ORIGINAL_SIZE][0], [12, 20])
