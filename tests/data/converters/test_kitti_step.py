"""Tests for deeplab_video.data.converters.kitti_step on a tiny dataset in the official layout."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from deeplab_video.data.converters import common, kitti_step

HEIGHT, WIDTH = 12, 20
# split -> sequence -> number of frames.
LAYOUT = {"train": {"0000": 3, "0001": 2}, "val": {"0002": 3}, "test": {"0003": 2}}
ROAD, SKY, PERSON, CAR, VOID = 0, 10, 11, 13, 255


def _semantic_instance(sequence: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky over road, a car (id 1) moving right, a person (id 7) from frame 1, a void patch."""
    semantic = np.full((HEIGHT, WIDTH), ROAD, np.int32)
    instance = np.zeros((HEIGHT, WIDTH), np.int32)
    semantic[:3] = SKY
    semantic[0, :2] = VOID
    x = 2 + 3 * frame + int(sequence)
    semantic[5:9, x : x + 5] = CAR
    instance[5:9, x : x + 5] = 1
    if frame >= 1:
        semantic[4:11, 15:17] = PERSON
        instance[4:11, 15:17] = 300 + frame  # needs the G channel: 300 = 1 * 256 + 44
    return semantic, instance


def _image(sequence: str, frame: int) -> np.ndarray:
    rng = np.random.default_rng(100 * int(sequence) + frame)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _write_rgb(path, rgb: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _write_panoptic_map(path, semantic, instance) -> None:
    """The official encoding: R = semantic, G = instance // 256, B = instance % 256."""
    _write_rgb(path, np.stack([semantic, instance // 256, instance % 256], -1).astype(np.uint8))


@pytest.fixture
def kitti_root(tmp_path):
    root = tmp_path / "kitti_step"
    for split, sequences in LAYOUT.items():
        for sequence, num_frames in sequences.items():
            for frame in range(num_frames):
                name = f"{frame:06d}.png"
                _write_rgb(root / "images" / split / sequence / name, _image(sequence, frame))
                if split != "test":
                    path = root / "panoptic_maps" / split / sequence / name
                    _write_panoptic_map(path, *_semantic_instance(sequence, frame))
    return root


def _expected_panoptic(sequence: str, frame: int) -> np.ndarray:
    semantic, instance = _semantic_instance(sequence, frame)
    return semantic * 1000 + instance


def test_converts_labelled_splits(kitti_root, tmp_path, read_shards):
    out = tmp_path / "out"
    paths = kitti_step.convert(str(kitti_root), str(out), splits=("train", "val"), num_shards=4)
    assert [os.path.basename(p) for p in paths["train"]] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert [os.path.basename(p) for p in paths["val"]] == ["val-00000-of-00001.tfrecord"]
    for split in ("train", "val"):
        frames = read_shards(paths[split])
        expected_keys = [(s, i) for s, n in LAYOUT[split].items() for i in range(n)]
        assert [(f["sequence_id"], f["frame_index"]) for f in frames] == expected_keys
        for frame in frames:
            key = (frame["sequence_id"], frame["frame_index"])
            np.testing.assert_array_equal(frame["panoptic"], _expected_panoptic(*key))
            np.testing.assert_array_equal(frame["image"], _image(*key))
    # Hand-checked values: a car pixel, a person pixel (instance 302 from G=1, B=46), void.
    frame = read_shards(paths["train"])[2]
    assert frame["panoptic"][6, 8] == 13 * 1000 + 1
    assert frame["panoptic"][6, 15] == 11 * 1000 + 302
    assert frame["panoptic"][0, 0] == 255 * 1000


def test_clips_load_through_the_pipeline(kitti_root, tmp_path):
    pipeline = pytest.importorskip("deeplab_video.data.pipeline")
    from deeplab_video.protos import dataset_pb2

    out = tmp_path / "out"
    kitti_step.convert(str(kitti_root), str(out), splits=("train",), num_shards=2)
    options = dataset_pb2.DatasetOptions(
        dataset="kitti_step",
        file_pattern=[str(out / "train-*.tfrecord")],
        batch_size=1,
        crop_size=[33, 33],
        clip_length=2,
    )
    clips = list(pipeline.build_clip_dataset(options, is_training=False).as_numpy_iterator())
    keys = [(c["sequence_id"][0].decode(), c["frame_index"][0].tolist()) for c in clips]
    # Near-online clips overlap by one frame and never mix sequences.
    assert keys == [("0000", [0, 1]), ("0000", [1, 2]), ("0001", [0, 1])]
    for clip, (sequence, indices) in zip(clips, keys, strict=True):
        assert clip["image"].shape == (1, 2, 33, 33, 3)
        for t, index in enumerate(indices):
            panoptic = clip["panoptic"][0, t]
            np.testing.assert_array_equal(
                panoptic[:HEIGHT, :WIDTH], _expected_panoptic(sequence, index)
            )
            assert (panoptic[HEIGHT:] // 1000 == 255).all()  # padding is void
            np.testing.assert_array_equal(
                clip["image"][0, t, :HEIGHT, :WIDTH], _image(sequence, index).astype(np.float32)
            )


def test_test_split_gets_void_labels(kitti_root, tmp_path, read_shards):
    paths = kitti_step.convert(str(kitti_root), str(tmp_path / "out"), splits=("test",))
    frames = read_shards(paths["test"])
    assert [(f["sequence_id"], f["frame_index"]) for f in frames] == [("0003", 0), ("0003", 1)]
    assert all((f["panoptic"] == 255 * 1000).all() for f in frames)
    np.testing.assert_array_equal(frames[1]["image"], _image("0003", 1))


def _convert_fails(root, out, match):
    with pytest.raises(common.ConversionError, match=match):
        kitti_step.convert(str(root), str(out), splits=("train", "val"), num_shards=2)


def test_missing_panoptic_map(kitti_root, tmp_path, assert_no_output):
    os.remove(kitti_root / "panoptic_maps/val/0002/000001.png")
    _convert_fails(kitti_root, tmp_path / "out", r"images/val/0002/000001.png: missing frame")
    assert_no_output(tmp_path / "out")


def test_panoptic_map_without_image(kitti_root, tmp_path, assert_no_output):
    _write_panoptic_map(
        kitti_root / "panoptic_maps/train/0001/000002.png", *_semantic_instance("0001", 2)
    )
    _convert_fails(kitti_root, tmp_path / "out", r"panoptic_maps/train/0001/000002.png: missing")
    assert_no_output(tmp_path / "out")


def test_sequence_of_panoptic_maps_without_images(kitti_root, tmp_path, assert_no_output):
    _write_panoptic_map(
        kitti_root / "panoptic_maps/val/0009/000000.png", *_semantic_instance("0", 0)
    )
    _convert_fails(kitti_root, tmp_path / "out", r"panoptic_maps/val/0009: panoptic maps of a")
    assert_no_output(tmp_path / "out")


def test_gap_in_frame_numbers(kitti_root, tmp_path, assert_no_output):
    os.remove(kitti_root / "images/train/0000/000001.png")
    os.remove(kitti_root / "panoptic_maps/train/0000/000001.png")
    _convert_fails(kitti_root, tmp_path / "out", r"0000/000002.png: frame 1 of sequence '0000'")
    assert_no_output(tmp_path / "out")


def test_size_mismatch_in_last_frame_leaves_no_partial_output(
    kitti_root, tmp_path, assert_no_output
):
    """Train is written in full and val half before the bad frame: nothing may remain."""
    path = kitti_root / "panoptic_maps/val/0002/000002.png"
    _write_panoptic_map(
        path, np.zeros((HEIGHT, WIDTH - 1), np.int32), np.zeros((HEIGHT, WIDTH - 1), np.int32)
    )
    out = tmp_path / "out"
    with pytest.raises(common.ConversionError, match=r"val/0002/000002.png: label size \(12, 19\)"):
        kitti_step.convert(str(kitti_root), str(out), splits=("val",))
    assert_no_output(out)


def test_semantic_outside_classes(kitti_root, tmp_path, assert_no_output):
    semantic, instance = _semantic_instance("0001", 1)
    semantic[11, 0] = 19
    _write_panoptic_map(kitti_root / "panoptic_maps/train/0001/000001.png", semantic, instance)
    _convert_fails(kitti_root, tmp_path / "out", r"train/0001/000001.png: semantic ids \[19\]")
    assert_no_output(tmp_path / "out")


def test_instance_id_too_large(kitti_root, tmp_path, assert_no_output):
    semantic, instance = _semantic_instance("0000", 0)
    instance[5:9, 2:7] = 1000
    _write_panoptic_map(kitti_root / "panoptic_maps/train/0000/000000.png", semantic, instance)
    _convert_fails(kitti_root, tmp_path / "out", "0000/000000.png: instance id 1000 does not fit")
    assert_no_output(tmp_path / "out")


def test_grey_panoptic_map(kitti_root, tmp_path):
    cv2.imwrite(
        str(kitti_root / "panoptic_maps/val/0002/000000.png"), np.zeros((HEIGHT, WIDTH), np.uint8)
    )
    _convert_fails(kitti_root, tmp_path / "out", "val/0002/000000.png: expected an 8-bit RGB")


def test_missing_split_folder(kitti_root, tmp_path, assert_no_output):
    shutil.rmtree(kitti_root / "images/val")
    _convert_fails(kitti_root, tmp_path / "out", "images/val: split folder not found")
    assert_no_output(tmp_path / "out")


@pytest.mark.slow  # two Python + TensorFlow start-ups
def test_cli(kitti_root, tmp_path):
    """The console script's module, in a subprocess (absl flags are process-global)."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "deeplab_video.data.converters.kitti_step_cli",
        f"--kitti_step_root={kitti_root}",
        f"--output_dir={out}",
        "--splits=val,test",
        "--num_shards=3",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == [
        "test-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord",
    ]
    assert "kitti_step val: 100%" in result.stderr  # the progress bar
    os.remove(kitti_root / "images/val/0002/000000.png")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "panoptic_maps/val/0002/000000.png: missing frame" in result.stderr
