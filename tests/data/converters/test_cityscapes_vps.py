"""Tests for deeplab_video.data.converters.cityscapes_vps on a tiny dataset in its layout."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from deeplab_video.data.converters import cityscapes_vps, common

HEIGHT, WIDTH = 10, 16
# split -> video -> its annotated frame numbers (the 4-digit field counts annotated frames).
LAYOUT = {"train": {"0001": [1, 2, 3], "0002": [7, 8]}, "val": {"0005": [25, 26]}}
ROAD, SKY, PERSON, CAR, VOID = 0, 10, 11, 13, 255


def _label(video: int, t: int) -> np.ndarray:
    """panoptic_inst values: stuff = class id, things = class * 1000 + object id, void 255."""
    label = np.full((HEIGHT, WIDTH), ROAD, np.uint16)
    label[:2] = SKY
    label[0, :2] = VOID
    x = 1 + 2 * t + video
    label[4:7, x : x + 4] = CAR * 1000  # object id 0 is a valid object in this dataset
    label[3:9, 12:14] = PERSON * 1000 + 1
    if t >= 1:
        label[7:10, 0:3] = CAR * 1000 + 2
    return label


def _expected(labels: list[np.ndarray]) -> list[np.ndarray]:
    """Oracle: thing ids 1, 2, ... per video by first appearance (frame, raster order)."""
    ids, frames = {}, []
    for label in labels:
        panoptic = np.zeros(label.shape, np.int64)
        for (y, x), value in np.ndenumerate(label.astype(np.int64)):
            if value < 1000:
                panoptic[y, x] = value * 1000
            else:
                panoptic[y, x] = value // 1000 * 1000 + ids.setdefault(int(value), len(ids) + 1)
        frames.append(panoptic)
    return frames


def _image(video: int, t: int) -> np.ndarray:
    return np.random.default_rng(10 * video + t).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)


def _names(video: str, number: int, last: bool) -> tuple[str, str]:
    prefix = f"{video}_{number:04d}_frankfurt_000000_{1716 + 5 * number:06d}"
    if last:  # the Cityscapes frame of the snippet
        return f"{prefix}_leftImg8bit.png", f"{prefix}_gtFine_color.png"
    return f"{prefix}_newImg8bit.png", f"{prefix}_final_mask.png"


@pytest.fixture
def vps_root(tmp_path):
    root = tmp_path / "cityscapes_vps"
    for split, videos in LAYOUT.items():
        os.makedirs(root / split / "img")
        os.makedirs(root / split / "panoptic_inst")
        for video, numbers in videos.items():
            for t, number in enumerate(numbers):
                image_name, label_name = _names(video, number, t == len(numbers) - 1)
                cv2.imwrite(
                    str(root / split / "img" / image_name), _image(int(video), t)[..., ::-1]
                )
                cv2.imwrite(str(root / split / "panoptic_inst" / label_name), _label(int(video), t))
    return root


def test_converts_train_and_val(vps_root, tmp_path, read_shards):
    paths = cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"), num_shards=2)
    assert [os.path.basename(p) for p in paths["val"]] == ["val-00000-of-00001.tfrecord"]
    assert len(paths["train"]) == 2
    for split, videos in LAYOUT.items():
        frames = read_shards(paths[split])
        keys = [(v, n) for v, numbers in videos.items() for n in numbers]
        assert [(f["sequence_id"], f["frame_index"]) for f in frames] == keys
        position = 0
        for video, numbers in videos.items():
            labels = [_label(int(video), t) for t in range(len(numbers))]
            for t, expected in enumerate(_expected(labels)):
                np.testing.assert_array_equal(frames[position]["panoptic"], expected)
                np.testing.assert_array_equal(frames[position]["image"], _image(int(video), t))
                position += 1
    # Hand-checked, video 0001 frame 1. In frame 0 the person's first pixel (3, 12) comes
    # before the car's (4, 2) in raster order: person -> 1, car 13000 -> 2, car 13002 -> 3.
    frame = read_shards(paths["train"])[1]["panoptic"]
    assert frame[0, 0] == VOID * 1000
    assert frame[1, 5] == SKY * 1000
    assert frame[4, 4] == CAR * 1000 + 2
    assert frame[3, 12] == PERSON * 1000 + 1
    assert frame[8, 0] == CAR * 1000 + 3
    assert frame[9, 8] == ROAD * 1000


def test_missing_label(vps_root, tmp_path, assert_no_output):
    _, label_name = _names("0005", 26, last=True)
    os.remove(vps_root / "val/panoptic_inst" / label_name)
    image_name, _ = _names("0005", 26, last=True)
    with pytest.raises(common.ConversionError, match=f"{image_name}: missing frame"):
        cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"))
    assert_no_output(tmp_path / "out")


def test_label_without_image(vps_root, tmp_path, assert_no_output):
    image_name, _ = _names("0002", 8, last=True)
    os.remove(vps_root / "train/img" / image_name)
    with pytest.raises(common.ConversionError, match="0002_0008_.*_gtFine_color.png: missing"):
        cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"))
    assert_no_output(tmp_path / "out")


def test_unexpected_file_name(vps_root, tmp_path):
    cv2.imwrite(str(vps_root / "val/img/frankfurt_000000_001736_leftImg8bit.png"), _image(0, 0))
    with pytest.raises(common.ConversionError, match="frankfurt_000000_001736_leftImg8bit.png"):
        cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"))


def test_class_outside_train_ids(vps_root, tmp_path, assert_no_output):
    label = _label(5, 0)
    label[9, 15] = 19
    _, label_name = _names("0005", 25, last=False)
    cv2.imwrite(str(vps_root / "val/panoptic_inst" / label_name), label)
    with pytest.raises(common.ConversionError, match=f"{label_name}: category id 19 is outside"):
        cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"), splits=("val",))
    assert_no_output(tmp_path / "out")


def test_test_split_is_refused(vps_root, tmp_path):
    with pytest.raises(common.ConversionError, match="split 'test' has no panoptic labels"):
        cityscapes_vps.convert(str(vps_root), str(tmp_path / "out"), splits=("test",))


@pytest.mark.slow  # a Python + TensorFlow start-up
def test_cli(vps_root, tmp_path):
    """The CLI module in a subprocess (absl flags are process-global)."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "deeplab_video.data.converters.cityscapes_vps_cli",
        f"--cityscapes_vps_root={vps_root}",
        f"--output_dir={out}",
        "--splits=val",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert os.listdir(out) == ["val-00000-of-00001.tfrecord"]
