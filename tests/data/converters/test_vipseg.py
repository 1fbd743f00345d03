"""Tests for deeplab_video.data.converters.vipseg on a tiny dataset in the official formats.

The fixture writes VIPSeg_720P as the dataset's scripts leave it: JPEG frames, raw 16-bit
panomasks, and the COCO-panoptic form (panomasksRGB + panoptic_gt_VIPSeg_<split>.json, one
random colour per raw mask value and video, as create_panoptic_video_labels.py does).
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.data import tfrecord
from deeplab_video.data.converters import common, vipseg

HEIGHT, WIDTH = 12, 20
DIVISOR = 10000
VOID = 255 * DIVISOR
# split -> video -> frame numbers (VIPSeg's are 8-digit numbers with gaps).
LAYOUT = {
    "train": {"12_n-ytHkMceew": [5, 10, 15], "7_cblDl5vCZnw": [1, 6]},
    "val": {"3_valvideo": [20, 25]},
    "test": {"9_testvideo": [0, 5]},
}
PERSON, CAR, WALL, SKY, ROAD = 60, 48, 0, 28, 18


def _raw_mask(video_index: int, t: int) -> np.ndarray:
    """0 void, category + 1 for stuff, (category + 1) * 100 + k for thing instances."""
    mask = np.full((HEIGHT, WIDTH), WALL + 1, np.uint16)
    mask[:3] = SKY + 1
    mask[0, :3] = 0
    x = 2 + 3 * t + video_index
    mask[4:9, x : x + 4] = (PERSON + 1) * 100  # instance 0 of a person: 6100
    if t >= 1:
        mask[5:11, 14:18] = (PERSON + 1) * 100 + 1
    if t != 1:
        mask[9:12, 0:4] = (CAR + 1) * 100 + 3  # leaves in frame 1 and comes back
    mask[10:12, 8:11] = PERSON + 1  # a person region without an instance id
    mask[11, 18:] = ROAD + 1
    return mask


def _category(value: int) -> int:
    return value - 1 if value <= 124 else value // 100 - 1


def _expected_video(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Oracle: thing ids 1, 2, ... by first appearance (frame order, then raster order)."""
    ids, expected = {}, []
    for mask in masks:
        panoptic = np.full(mask.shape, VOID, np.int64)
        for (y, x), value in np.ndenumerate(mask):
            if value == 0:
                continue
            category = _category(int(value))
            instance = 0
            if category in datasets.VIPSEG.thing_ids:
                instance = ids.setdefault(int(value), len(ids) + 1)
            panoptic[y, x] = category * DIVISOR + instance
        expected.append(panoptic)
    return expected


def _image(video_index: int, t: int) -> np.ndarray:
    """A smooth RGB frame (JPEG keeps it within a few grey levels)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack(
        [10 * xx + 5 * t, 15 * yy + 20 * video_index, np.full_like(xx, 128)], axis=-1
    ).astype(np.uint8)


def _write(path, array) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _write_coco(root, split, videos, crowd_values=()) -> None:
    """panomasksRGB/ + panoptic_gt_VIPSeg_<split>.json from the raw masks."""
    rng = np.random.default_rng(7)
    video_entries, annotations = [], []
    for video, masks in videos.items():
        colours = {}
        frames = []
        for name, mask in masks:
            rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            segments = []
            for value in np.unique(mask):
                if value == 0:
                    continue
                colour = colours.setdefault(int(value), rng.integers(1, 256, 3, dtype=np.uint8))
                rgb[mask == value] = colour
                segment_id = int(colour[0]) + 256 * int(colour[1]) + 65536 * int(colour[2])
                segments.append(
                    {
                        "id": segment_id,
                        "category_id": _category(int(value)),
                        "iscrowd": int(int(value) in crowd_values),
                        "area": int((mask == value).sum()),
                    }
                )
            _write(root / "panomasksRGB" / video / f"{name}.png", rgb[..., ::-1])
            frames.append({"image_id": name, "file_name": f"{name}.png", "segments_info": segments})
        images = [
            {"id": n, "width": WIDTH, "height": HEIGHT, "file_name": f"{n}.png"} for n, _ in masks
        ]
        video_entries.append({"video_id": video, "images": images})
        annotations.append({"video_id": video, "annotations": frames})
    categories = [
        {"id": i, "name": name, "isthing": int(i in datasets.VIPSEG.thing_ids)}
        for i, name in enumerate(datasets.VIPSEG.class_names)
    ]
    document = {"videos": video_entries, "annotations": annotations, "categories": categories}
    (root / f"panoptic_gt_VIPSeg_{split}.json").write_text(json.dumps(document))


def _build(tmp_path, coco: bool = True, raw: bool = True, crowd_values=()):
    """Writes the dataset; returns (VIPSeg_720P root, {video: [(name, raw mask)]})."""
    root = tmp_path / "VIPSeg" / "VIPSeg_720P"
    root.mkdir(parents=True)
    masks = {}
    for split, videos in LAYOUT.items():
        (tmp_path / "VIPSeg" / f"{split}.txt").write_text("".join(f"{v}\n" for v in videos))
        split_masks = {}
        for video_index, (video, numbers) in enumerate(videos.items()):
            split_masks[video] = []
            for t, number in enumerate(numbers):
                name = f"{number:08d}"
                _write(root / "images" / video / f"{name}.jpg", _image(video_index, t)[..., ::-1])
                if split == "test":
                    continue
                mask = _raw_mask(video_index, t)
                split_masks[video].append((name, mask))
                if raw:
                    _write(root / "panomasks" / video / f"{name}.png", mask)
        if coco and split != "test":
            _write_coco(root, split, split_masks, crowd_values)
        masks.update(split_masks)
    return root, masks


def _check_split(frames, split, masks) -> None:
    expected_keys = [(v, n) for v, numbers in LAYOUT[split].items() for n in numbers]
    assert [(f["sequence_id"], f["frame_index"]) for f in frames] == expected_keys
    position = 0
    for video in LAYOUT[split]:
        expected = _expected_video([mask for _, mask in masks[video]])
        for panoptic in expected:
            np.testing.assert_array_equal(frames[position]["panoptic"], panoptic)
            position += 1


@pytest.mark.parametrize("label_format", ["raw", "coco"])
def test_converts_both_label_forms(tmp_path, read_shards, label_format):
    root, masks = _build(tmp_path)
    paths = vipseg.convert(
        str(root), str(tmp_path / "out"), ("train", "val"), 2, label_format, image_format="png"
    )
    assert [os.path.basename(p) for p in paths["train"]] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    train = read_shards(paths["train"])
    _check_split(train, "train", masks)
    _check_split(read_shards(paths["val"]), "val", masks)
    # Hand-checked: frame 1 of the first video holds both persons, no car, void corner.
    frame = train[1]["panoptic"]
    assert frame[0, 0] == VOID
    assert frame[1, 5] == SKY * DIVISOR
    assert frame[4, 5] == PERSON * DIVISOR + 1  # 6100, first seen at (4, 2) in frame 0
    assert frame[10, 8] == PERSON * DIVISOR + 3  # the id-less person region, 3rd in frame 0
    assert frame[5, 14] == PERSON * DIVISOR + 4  # 6101, new in frame 1
    assert frame[9, 0] == WALL * DIVISOR
    assert train[2]["panoptic"][9, 0] == CAR * DIVISOR + 2  # the car keeps its id
    assert frame[11, 19] == ROAD * DIVISOR
    # The frames went through PNG: exactly the decoded source JPEG.
    source = cv2.imread(str(root / "images/12_n-ytHkMceew/00000010.jpg"))[..., ::-1]
    np.testing.assert_array_equal(train[1]["image"], source)


def test_auto_prefers_coco_and_falls_back_to_raw(tmp_path, read_shards):
    root, masks = _build(tmp_path, raw=False)
    assert vipseg.resolve_label_format(str(root), "train", "auto") == "coco"
    paths = vipseg.convert(str(root), str(tmp_path / "out"), ("val",))
    _check_split(read_shards(paths["val"]), "val", masks)
    assert vipseg.resolve_label_format(str(tmp_path), "train", "auto") == "raw"
    with pytest.raises(common.ConversionError, match="unknown VIPSeg label format 'rgb'"):
        vipseg.resolve_label_format(str(root), "train", "rgb")


def test_jpeg_frames_stay_jpeg(tmp_path, read_shards):
    root, _ = _build(tmp_path, coco=False)
    paths = vipseg.convert(str(root), str(tmp_path / "out"), ("val",), label_format="raw")
    record = next(tfrecord.read_records(paths["val"][0]))
    features = tf.train.Example.FromString(record).features.feature
    assert features[tfrecord.KEY_IMAGE_FORMAT].bytes_list.value == [b"jpeg"]
    for frame, number in zip(read_shards(paths["val"]), LAYOUT["val"]["3_valvideo"], strict=True):
        source = cv2.imread(str(root / f"images/3_valvideo/{number:08d}.jpg"))[..., ::-1]
        error = np.abs(frame["image"].astype(int) - source.astype(int))
        assert error.mean() < 4.0  # re-encoded at quality 95 (and another JPEG decoder)


def test_crowd_segments_get_no_instance(tmp_path, read_shards):
    root, _ = _build(tmp_path, raw=False, crowd_values=((PERSON + 1) * 100 + 1,))
    paths = vipseg.convert(str(root), str(tmp_path / "out"), ("train",), label_format="coco")
    frame = read_shards(paths["train"])[1]["panoptic"]
    assert frame[5, 14] == PERSON * DIVISOR  # crowd: instance 0
    assert frame[10, 8] == PERSON * DIVISOR + 3


def test_clips_load_through_the_pipeline(tmp_path):
    pipeline = pytest.importorskip("deeplab_video.data.pipeline")
    from deeplab_video.protos import dataset_pb2

    root, masks = _build(tmp_path, coco=False)
    out = tmp_path / "out"
    vipseg.convert(str(root), str(out), ("train",), label_format="raw")
    options = dataset_pb2.DatasetOptions(
        dataset="vipseg",
        file_pattern=[str(out / "train-*.tfrecord")],
        batch_size=1,
        crop_size=[33, 33],
        clip_length=2,
    )
    clips = list(pipeline.build_clip_dataset(options, is_training=False).as_numpy_iterator())
    keys = [(c["sequence_id"][0].decode(), c["frame_index"][0].tolist()) for c in clips]
    assert keys == [
        ("12_n-ytHkMceew", [5, 10]),
        ("12_n-ytHkMceew", [10, 15]),
        ("7_cblDl5vCZnw", [1, 6]),
    ]
    for clip, (video, numbers) in zip(clips, keys, strict=True):
        expected = _expected_video([mask for _, mask in masks[video]])
        for t, number in enumerate(numbers):
            position = LAYOUT["train"][video].index(number)
            panoptic = clip["panoptic"][0, t]
            np.testing.assert_array_equal(panoptic[:HEIGHT, :WIDTH], expected[position])
            assert (panoptic[:, WIDTH:] // DIVISOR == 255).all()


def test_test_split_gets_void_labels(tmp_path, read_shards):
    root, _ = _build(tmp_path, coco=False, raw=False)
    paths = vipseg.convert(str(root), str(tmp_path / "out"), ("test",))
    frames = read_shards(paths["test"])
    assert [(f["sequence_id"], f["frame_index"]) for f in frames] == [
        ("9_testvideo", 0),
        ("9_testvideo", 5),
    ]
    assert all((f["panoptic"] == VOID).all() for f in frames)


def test_split_list_in_root_or_parent(tmp_path):
    root, _ = _build(tmp_path, coco=False)
    assert vipseg.read_split_list(str(root), "val") == ["3_valvideo"]
    (root / "val.txt").write_text("other\n\n")
    assert vipseg.read_split_list(str(root), "val") == ["other"]
    with pytest.raises(common.ConversionError, match="split list not found at .*train2.txt"):
        vipseg.read_split_list(str(root), "train2")


def _convert_fails(root, out, match, label_format="auto", splits=("train", "val")):
    with pytest.raises(common.ConversionError, match=match):
        vipseg.convert(str(root), str(out), splits, 2, label_format)


@pytest.mark.parametrize("label_format", ["raw", "coco"])
def test_image_without_mask(tmp_path, assert_no_output, label_format):
    root, _ = _build(tmp_path)
    folder = "panomasks" if label_format == "raw" else "panomasksRGB"
    os.remove(root / folder / "7_cblDl5vCZnw" / "00000006.png")
    match = "images/7_cblDl5vCZnw/00000006.jpg: missing frame"
    _convert_fails(root, tmp_path / "out", match, label_format)
    assert_no_output(tmp_path / "out")


def test_unknown_raw_category(tmp_path):
    """Train is written in full, then val fails: train stays, nothing of val remains."""
    root, _ = _build(tmp_path, coco=False)
    mask = _raw_mask(0, 1)
    mask[5, 5] = 125 * 100 + 2  # category 124: VIPSeg has 0..123
    _write(root / "panomasks/3_valvideo/00000025.png", mask)
    match = r"3_valvideo/00000025.png: category id 124 is outside vipseg's 0..123"
    _convert_fails(root, tmp_path / "out", match, "raw")
    assert sorted(os.listdir(tmp_path / "out")) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]


def test_unknown_coco_category(tmp_path, assert_no_output):
    root, _ = _build(tmp_path, raw=False)
    path = root / "panoptic_gt_VIPSeg_val.json"
    document = json.loads(path.read_text())
    document["annotations"][0]["annotations"][1]["segments_info"][0]["category_id"] = 130
    path.write_text(json.dumps(document))
    match = r"panomasksRGB/3_valvideo/00000025.png: category id 130 is outside"
    _convert_fails(root, tmp_path / "out", match, splits=("val",))
    assert_no_output(tmp_path / "out")


def test_coco_segment_without_segments_info(tmp_path, assert_no_output):
    root, _ = _build(tmp_path, raw=False)
    path = root / "panomasksRGB/3_valvideo/00000025.png"
    rgb = cv2.imread(str(path))
    rgb[0, 0] = (1, 2, 3)  # BGR: segment id 3 + 2 * 256 + 1 * 65536
    cv2.imwrite(str(path), rgb)
    _convert_fails(
        root, tmp_path / "out", r"00000025.png: segment 66051 has no segments_info", splits=("val",)
    )
    assert_no_output(tmp_path / "out")


def test_coco_json_missing_a_frame_fails_before_writing(tmp_path, assert_no_output):
    root, _ = _build(tmp_path, raw=False)
    path = root / "panoptic_gt_VIPSeg_val.json"
    document = json.loads(path.read_text())
    del document["annotations"][0]["annotations"][1]
    path.write_text(json.dumps(document))
    _convert_fails(root, tmp_path / "out", r"3_valvideo/00000025.png: no segments_info for this")
    assert_no_output(tmp_path / "out")


def test_size_mismatch(tmp_path, assert_no_output):
    root, _ = _build(tmp_path, coco=False)
    _write(root / "panomasks/3_valvideo/00000025.png", np.ones((HEIGHT + 1, WIDTH), np.uint16))
    _convert_fails(
        root, tmp_path / "out", r"00000025.png: label size \(13, 20\) differs", "raw", ("val",)
    )
    assert_no_output(tmp_path / "out")


def test_missing_video_folder(tmp_path, assert_no_output):
    root, _ = _build(tmp_path, coco=False)
    (tmp_path / "VIPSeg" / "val.txt").write_text("3_valvideo\nnot_downloaded\n")
    _convert_fails(root, tmp_path / "out", "images/not_downloaded: folder not found", "raw")
    assert_no_output(tmp_path / "out")


@pytest.mark.slow  # two Python + TensorFlow start-ups
def test_cli(tmp_path):
    """The console script's module, in a subprocess (absl flags are process-global)."""
    root, _ = _build(tmp_path, raw=False)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "deeplab_video.data.converters.vipseg_cli",
        f"--vipseg_root={root}",
        f"--output_dir={out}",
        "--splits=val",
        "--label_format=coco",
        "--image_format=png",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert os.listdir(out) == ["val-00000-of-00001.tfrecord"]
    result = subprocess.run(
        [*command[:-2], "--label_format=raw"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "panomasks/3_valvideo: folder not found" in result.stderr
