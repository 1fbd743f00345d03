"""Tests for deeplab_video.inference.infer (deeplab-video-infer), run as a command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from absl import app
from google.protobuf import text_format

from deeplab_video import datasets
from deeplab_video.data import panoptic_png
from deeplab_video.export import tflite_export
from deeplab_video.inference import infer
from deeplab_video.model import builder
from tests import conftest, video_fixtures
from tests.export import tflite_fixtures
from tests.model import deeplab2_files


def _run_infer(*args: str) -> subprocess.CompletedProcess:
    """Runs deeplab-video-infer with `args` in a fresh process from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "deeplab_video.inference.infer", *args],
        cwd=conftest.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_coco_config_with_a_deeplab2_checkpoint_on_an_h264_clip(tmp_path):
    # The COCO config's network at the tiny model's widths, with weights in DeepLab2's
    # checkpoint format; a 5-frame H.264 clip of odd size.
    options = deeplab2_files.reduced_options("coco")
    config_file = tmp_path / "coco.textproto"
    config_file.write_text(text_format.MessageToString(options))
    deeplab2_files.checkpoint_of(
        builder.build_model(options, inference_only=True), str(tmp_path / "dl2" / "ckpt-150000")
    )
    rng = np.random.default_rng(0)
    video = tmp_path / "street.mp4"
    video_fixtures.write_h264(video, [rng.integers(0, 255, (40, 58, 3), np.uint8)] * 5)
    result = _run_infer(
        f"--config_file={config_file}",
        f"--checkpoint={tmp_path / 'dl2'}",
        f"--input={video}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeepLab2 kMaX-DeepLab checkpoint" in result.stderr
    assert "Not in the checkpoint" not in result.stderr
    output = tmp_path / "out"
    assert len(list((output / "panoptic").iterdir())) == 5
    tracks = json.loads((output / "tracks.json").read_text())
    assert tracks["num_frames"] == 5
    names = set(datasets.COCO_PANOPTIC.class_names)
    assert all(track["class_name"] in names for track in tracks["tracks"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tflite=m.tflite", "--config_file=c.textproto"], "give one of --config_file"),
        (["--tflite=m.tflite", "--saved_model=export"], "give one of --config_file"),
        (["--tflite=m.tflite"], "--tflite needs --dataset"),
    ],
)
def test_usage_errors_of_the_model_flags(cli_flags, tmp_path, args, message):
    cli_flags(infer, f"--input={tmp_path}", f"--output_dir={tmp_path / 'out'}", *args)
    with pytest.raises(app.UsageError, match=message):
        infer.main(["deeplab-video-infer"])


@pytest.mark.slow
def test_a_tflite_export_on_a_video_of_another_size(tmp_path):
    # The TFLite test model at 32 x 48 on a 5-frame H.264 clip of 40 x 58 frames.
    options = tflite_fixtures.options()
    model_dir = tflite_fixtures.save_checkpoint(
        tflite_fixtures.reference_model(options), tmp_path / "model_dir"
    )
    model_path = tflite_export.export_tflite(
        options, str(tmp_path / "m.tflite"), (32, 48), model_dir
    )
    video = tmp_path / "street.mp4"
    video_fixtures.write_h264(video, list(tflite_fixtures.video(5, (40, 58))))
    result = _run_infer(
        f"--tflite={model_path}",
        "--dataset=synthetic",
        f"--input={video}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resized to the model's 32x48" in result.stderr
    pngs = sorted((tmp_path / "out" / "panoptic").iterdir())
    assert len(pngs) == 5
    divisor = datasets.SYNTHETIC.label_divisor
    assert panoptic_png.read(pngs[0], divisor).shape == (40, 58)
    assert json.loads((tmp_path / "out" / "tracks.json").read_text())["num_frames"] == 5
