"""Tests for deeplab_video.data.converters.common: pairing, checks, all-or-nothing shards."""

import os

import cv2
import numpy as np
import pytest

from deeplab_video import datasets
from deeplab_video.data.converters import common

DESCRIPTOR = datasets.KITTI_STEP


def _sequence(name: str, num_frames: int) -> common.SequenceFiles:
    frames = tuple(common.FrameFiles(i, f"{name}/{i:06d}.png", None) for i in range(num_frames))
    return common.SequenceFiles(name, frames)


def _write_png_frames(directory, count: int, height: int = 6, width: int = 10):
    """Writes random RGB PNG frames 000000.png, ...; returns the RGB arrays."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(count)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    for index, image in enumerate(images):
        cv2.imwrite(os.path.join(directory, f"{index:06d}.png"), image[..., ::-1])
    return images


def _sequences_on_disk(root, lengths: list[int]) -> list[common.SequenceFiles]:
    sequences = []
    for number, length in enumerate(lengths):
        directory = os.path.join(root, f"{number:04d}")
        _write_png_frames(directory, length)
        images = common.list_frames(directory, (".png",))
        sequences.append(common.pair_frames(f"{number:04d}", images, None, consecutive=True))
    return sequences


def _constant_labels(value: int):
    """A label reader giving every frame a constant panoptic map of the image's size."""

    def read(sequence):
        for frame in sequence.frames:
            height, width = cv2.imread(frame.image_path).shape[:2]
            yield np.full((height, width), value, np.int32)

    return read


@pytest.mark.parametrize(
    "lengths, num_shards, expected",
    [
        ([5, 5, 5, 5], 2, [0, 0, 1, 1]),
        ([5, 5, 5, 5], 4, [0, 1, 2, 3]),
        ([5, 5], 10, [0, 1]),  # never more shards than sequences
        ([30, 1, 1, 1], 3, [0, 1, 1, 1]),  # a long sequence fills two shares: no empty shard
        ([1, 1, 1, 30], 2, [0, 0, 0, 1]),
        ([3], 1, [0]),
    ],
)
def test_assign_shards(lengths, num_shards, expected):
    sequences = [_sequence(f"{i:04d}", n) for i, n in enumerate(lengths)]
    assert common.assign_shards(sequences, num_shards) == expected


def test_assign_shards_balances_frames():
    sequences = [_sequence(f"{i:04d}", 10) for i in range(12)]
    shards = common.assign_shards(sequences, 4)
    assert shards == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_pair_frames_consecutive():
    images = {"000004": "a/000004.png", "000003": "a/000003.png"}
    labels = {"000003": "b/000003.png", "000004": "b/000004.png"}
    sequence = common.pair_frames("0007", images, labels, consecutive=True)
    assert sequence.sequence_id == "0007"
    assert [f.frame_index for f in sequence.frames] == [3, 4]
    assert [f.label_path for f in sequence.frames] == ["b/000003.png", "b/000004.png"]
    assert [f.name for f in sequence.frames] == ["000003", "000004"]


def test_pair_frames_with_gaps_sorts_numerically():
    images = {"10": "v/10.jpg", "5": "v/5.jpg", "00000200": "v/00000200.jpg"}
    sequence = common.pair_frames("v", images, None, consecutive=False)
    assert [(f.frame_index, f.name) for f in sequence.frames] == [
        (5, "5"),
        (10, "10"),
        (200, "00000200"),
    ]
    assert all(f.label_path is None for f in sequence.frames)


@pytest.mark.parametrize(
    "images, labels, consecutive, message",
    [
        ({"000000": "i/0", "000001": "i/1"}, {"000000": "l/0"}, True, "i/1: missing frame"),
        ({"000000": "i/0"}, {"000000": "l/0", "000001": "l/1"}, False, "l/1: missing frame"),
        ({"000000": "i/0", "000002": "i/2"}, None, True, "i/2: frame 1 of sequence 's'"),
        ({"000000": "i/0", "frame1": "i/x"}, None, False, "i/x: the file name is not"),
        ({"000001": "i/1", "1": "i/one"}, None, False, "frame number of i/1 again"),
    ],
)
def test_pair_frames_errors(images, labels, consecutive, message):
    with pytest.raises(common.ConversionError, match=message):
        common.pair_frames("s", images, labels, consecutive)


def test_list_frames(tmp_path):
    for name in ("000001.png", "000000.png", "notes.txt", ".000002.png"):
        (tmp_path / name).write_bytes(b"")
    assert common.list_frames(str(tmp_path), (".png",)) == {
        "000000": str(tmp_path / "000000.png"),
        "000001": str(tmp_path / "000001.png"),
    }


def test_list_frames_errors(tmp_path):
    with pytest.raises(common.ConversionError, match="folder not found"):
        common.list_frames(str(tmp_path / "missing"), (".png",))
    with pytest.raises(common.ConversionError, match="no .png frames"):
        common.list_frames(str(tmp_path), (".png",))
    (tmp_path / "000000.png").write_bytes(b"")
    (tmp_path / "000000.jpg").write_bytes(b"")
    with pytest.raises(common.ConversionError, match="a second file of '000000'"):
        common.list_frames(str(tmp_path), (".png", ".jpg"))


def test_read_image_and_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb[..., ::-1])
    image, image_format = common.read_image(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(image, rgb)
    assert image_format == "png"
    assert common.read_image(str(tmp_path / "a.jpg"))[1] == "jpeg"
    np.testing.assert_array_equal(common.read_png(str(tmp_path / "a.png")), rgb)
    mask = np.array([[0, 40000], [7, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    read = common.read_png(str(tmp_path / "m.png"))
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, mask)


def test_read_image_errors(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(common.ConversionError, match="x.png: frames must be PNG or JPEG"):
        common.read_image(str(tmp_path / "x.png"))
    with pytest.raises(common.ConversionError, match="y.png: cannot be read"):
        common.read_image(str(tmp_path / "y.png"))
    with pytest.raises(common.ConversionError, match="x.png: missing or not a decodable"):
        common.read_png(str(tmp_path / "x.png"))


def test_check_panoptic():
    ok = np.array([[0, 18 * 1000 + 4], [255 * 1000, 13 * 1000 + 999]], np.int32)
    common.check_panoptic(ok, DESCRIPTOR, "ok.png")
    bad = np.array([[19 * 1000, 5], [254 * 1000 + 1, 0]], np.int32)
    with pytest.raises(common.ConversionError, match=r"bad.png: semantic ids \[19, 254\]"):
        common.check_panoptic(bad, DESCRIPTOR, "bad.png")
    with pytest.raises(common.ConversionError, match="negative"):
        common.check_panoptic(np.array([[-1]], np.int32), DESCRIPTOR, "neg.png")


def test_write_split_shards_and_order(tmp_path, read_shards):
    sequences = _sequences_on_disk(tmp_path / "images", [3, 2, 2])
    paths = common.write_split(
        sequences, _constant_labels(13 * 1000 + 2), DESCRIPTOR, str(tmp_path / "out"), "val", 2
    )
    assert [os.path.basename(p) for p in paths] == [
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
    ]
    frames = read_shards(paths)
    assert [(f["shard"][:9], f["sequence_id"], f["frame_index"]) for f in frames] == [
        ("val-00000", "0000", 0),
        ("val-00000", "0000", 1),
        ("val-00000", "0000", 2),
        ("val-00001", "0001", 0),
        ("val-00001", "0001", 1),
        ("val-00001", "0002", 0),
        ("val-00001", "0002", 1),
    ]
    assert all((f["panoptic"] == 13002).all() for f in frames)
    expected = cv2.imread(sequences[1].frames[1].image_path)[..., ::-1]
    np.testing.assert_array_equal(frames[4]["image"], expected)


def test_write_split_unlabelled_gets_void(tmp_path, read_shards):
    sequences = _sequences_on_disk(tmp_path / "images", [2])
    paths = common.write_split(sequences, None, DESCRIPTOR, str(tmp_path / "out"), "test", 4)
    frames = read_shards(paths)
    assert len(frames) == 2
    assert all((f["panoptic"] == 255 * 1000).all() for f in frames)


def test_write_split_transcodes_to_jpeg(tmp_path, read_shards):
    sequences = _sequences_on_disk(tmp_path / "images", [1])
    paths = common.write_split(
        sequences, _constant_labels(0), DESCRIPTOR, str(tmp_path / "out"), "train", 1, "jpeg"
    )
    (frame,) = read_shards(paths)
    source = cv2.imread(sequences[0].frames[0].image_path)[..., ::-1]
    assert frame["image"].shape == source.shape
    assert not np.array_equal(frame["image"], source)  # lossy: random noise does not survive


def test_write_split_failure_leaves_nothing(tmp_path, assert_no_output):
    """A bad label in the last sequence: frames already written must not survive."""
    sequences = _sequences_on_disk(tmp_path / "images", [2, 2, 2])
    good = _constant_labels(0)

    def read(sequence):
        if sequence.sequence_id != "0002":
            yield from good(sequence)
            return
        yield np.zeros((6, 10), np.int32)
        yield np.zeros((6, 9), np.int32)

    with pytest.raises(common.ConversionError, match=r"label size \(6, 9\) differs .*000001.png"):
        common.write_split(sequences, read, DESCRIPTOR, str(tmp_path / "out"), "train", 3)
    assert_no_output(tmp_path / "out")


def test_write_split_replaces_earlier_shards(tmp_path):
    sequences = _sequences_on_disk(tmp_path / "images", [1, 1, 1])
    out = tmp_path / "out"
    labels = _constant_labels(0)
    common.write_split(sequences, labels, DESCRIPTOR, str(out), "train", 3)
    common.write_split(sequences, labels, DESCRIPTOR, str(out), "val", 3)
    (out / "train-notes.tfrecord").write_bytes(b"")
    common.write_split(sequences, labels, DESCRIPTOR, str(out), "train", 1)
    assert sorted(os.listdir(out)) == [
        "train-00000-of-00001.tfrecord",
        "train-notes.tfrecord",  # not a shard name: left alone
        "val-00000-of-00003.tfrecord",
        "val-00001-of-00003.tfrecord",
        "val-00002-of-00003.tfrecord",
    ]


def test_write_split_argument_errors(tmp_path):
    with pytest.raises(common.ConversionError, match="holds no sequence"):
        common.write_split([], None, DESCRIPTOR, str(tmp_path), "train", 1)
    sequences = _sequences_on_disk(tmp_path / "images", [1])
    with pytest.raises(ValueError, match="image_format"):
        common.write_split(sequences, None, DESCRIPTOR, str(tmp_path), "train", 1, "gif")
