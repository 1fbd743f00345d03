"""Tests for deeplab_video.inference.infer_lib (whole-video inference to files)."""

import json

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from deeplab_video import datasets
from deeplab_video.data import panoptic_png
from deeplab_video.inference import infer_lib
from deeplab_video.model import builder, pretrained
from tests import conftest, video_fixtures
from tests.model import deeplab2_files

SYNTHETIC = datasets.SYNTHETIC


def test_writer_records_pngs_video_and_tracks(tmp_path):
    writer = infer_lib.PredictionWriter(str(tmp_path), SYNTHETIC, fps=5.0)
    frame = np.zeros((10, 20, 3), np.uint8)
    for index in range(3):
        panoptic = np.zeros((10, 20), np.int32)
        panoptic[2:6, index : index + 4] = 4 * 1000 + 7  # box, track 7, moving right
        writer.add(index, frame, panoptic)
    summary = writer.close()
    assert summary["frames"] == 3 and summary["tracks"] == 1
    png = panoptic_png.read(tmp_path / "panoptic" / "000002.png", SYNTHETIC.label_divisor)
    assert png[3, 3] == 4007
    tracks = json.loads((tmp_path / "tracks.json").read_text())
    (track,) = tracks["tracks"]
    assert (track["track_id"], track["class_name"]) == (7, "box")
    assert (track["first_frame"], track["last_frame"]) == (0, 2)
    assert track["boxes"]["2"] == [0.1, 0.2, 0.3, 0.6]
    capture = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_runs_a_h264_video_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (36, 52, 3), dtype=np.uint8) for _ in range(4)]
    video = tmp_path / "phone.mp4"
    video_fixtures.write_h264(video, frames)
    config_file = conftest.CONFIG_DIR / "synthetic" / "tiny_near_online.textproto"
    output = tmp_path / "out"
    summary = infer_lib.run_inference(str(video), str(output), config_file=str(config_file))
    assert summary["frames"] == 4
    pngs = sorted(p.name for p in (output / "panoptic").iterdir())
    assert pngs == [f"{i:06d}.png" for i in range(4)]
    panoptic = panoptic_png.read(output / "panoptic" / "000000.png", SYNTHETIC.label_divisor)
    assert panoptic.shape == (36, 52)
    semantic = panoptic // SYNTHETIC.label_divisor
    assert np.all((semantic < SYNTHETIC.num_classes) | (semantic == SYNTHETIC.ignore_label))
    assert json.loads((output / "tracks.json").read_text())["num_frames"] == 4
    capture = cv2.VideoCapture(str(output / "overlay.mp4"))
    assert capture.read()[1].shape == (36, 52, 3)


def test_a_checkpoint_that_does_not_fit_the_config_is_one_error(tmp_path):
    # A DeepLab2 checkpoint of the reduced COCO network, run with a Cityscapes config.
    coco = deeplab2_files.reduced_options("coco")
    deeplab2_files.checkpoint_of(
        builder.build_model(coco, inference_only=True), str(tmp_path / "dl2" / "ckpt-1")
    )
    cityscapes = tmp_path / "cityscapes.textproto"
    cityscapes.write_text(text_format.MessageToString(deeplab2_files.reduced_options("cityscapes")))
    video = tmp_path / "clip.mp4"
    video_fixtures.write_h264(video, [np.zeros((40, 58, 3), np.uint8)] * 2)
    with pytest.raises(pretrained.CheckpointMismatchError) as error:
        infer_lib.run_inference(
            str(video), str(tmp_path / "out"), str(cityscapes), str(tmp_path / "dl2")
        )
    message = str(error.value)
    assert str(tmp_path / "dl2" / "ckpt-1") in message and str(cityscapes) in message
    # Other head widths (the stem stage feeds it), and the stem stage absent.
    assert "prediction_head/_pixel_space_head/" in message and "has another shape" in message
    assert "pixel_decoder/_backbone_norms/4/" in message and "is not in the checkpoint" in message


def test_track_boxes_are_the_pixel_extents_of_every_track(tmp_path):
    rng = np.random.default_rng(0)
    writer = infer_lib.PredictionWriter(str(tmp_path), SYNTHETIC, fps=5.0, write_video=False)
    semantic = rng.choice([0, 2, 3, 4, 5, SYNTHETIC.ignore_label], size=(31, 45))
    instance = rng.integers(0, 6, size=(31, 45))
    panoptic = (semantic * 1000 + instance).astype(np.int32)
    writer.add(3, np.zeros((31, 45, 3), np.uint8), panoptic)
    writer.close()
    tracks = json.loads((tmp_path / "tracks.json").read_text())["tracks"]
    expected = {}
    for label in np.unique(panoptic):
        class_id, track_id = divmod(int(label), 1000)
        if class_id in SYNTHETIC.thing_ids and track_id > 0:
            ys, xs = np.nonzero(panoptic == label)
            box = [xs.min() / 45, ys.min() / 31, (xs.max() + 1) / 45, (ys.max() + 1) / 31]
            expected[(class_id, track_id)] = [round(v, 5) for v in box]
    assert {(t["class_id"], t["track_id"]): t["boxes"]["3"] for t in tracks} == expected
