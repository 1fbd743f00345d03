"""Tests for deeplab_video.model.convert_checkpoint (deeplab-video-convert-checkpoint)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import config
from deeplab_video.model import builder, convert_checkpoint, pretrained
from tests import conftest

_TINY = str(conftest.CONFIG_DIR / "synthetic" / "tiny_online.textproto")


def _saved_model_weights(directory, width_multiplier=None) -> tuple[str, list[np.ndarray]]:
    """A checkpoint of ours for the tiny config (optionally another width)."""
    options = config.load_config(_TINY)
    if width_multiplier:
        options.model_options.backbone.width_multiplier = width_multiplier
    model = builder.build_model(options)  # the training model: it also has a semantic head
    prefix = tf.train.Checkpoint(**model.checkpoint_items).save(str(directory / "ckpt"))
    return prefix, [v.numpy() for v in model.checkpoint_items["backbone"].weights]


def test_converts_and_the_result_loads_completely(tmp_path):
    prefix, backbone = _saved_model_weights(tmp_path / "source")
    output_dir = tmp_path / "converted"
    report = convert_checkpoint.convert(prefix, _TINY, str(output_dir))
    assert report.missing == report.mismatched == ()
    assert all(name.startswith("semantic_head/") for name in report.unused)
    written = json.loads((output_dir / convert_checkpoint.REPORT_FILE).read_text())
    assert written["restored"] == list(report.restored)
    assert config.load_config(str(output_dir / convert_checkpoint.CONFIG_FILE)).model_options
    model = builder.build_model(config.load_config(_TINY), inference_only=True)
    again = pretrained.load_complete(model, str(output_dir), "the tiny model")
    assert again.source_format == "deeplab_video" and again.unused == ()
    for expected, weight in zip(backbone, model.checkpoint_items["backbone"].weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), expected)


def test_a_source_that_does_not_fit_writes_the_report_only(tmp_path):
    prefix, _ = _saved_model_weights(tmp_path / "source", width_multiplier=0.25)
    output_dir = tmp_path / "converted"
    with pytest.raises(pretrained.CheckpointMismatchError) as error:
        convert_checkpoint.convert(prefix, _TINY, str(output_dir))
    assert prefix in str(error.value) and _TINY in str(error.value)
    report = json.loads((output_dir / convert_checkpoint.REPORT_FILE).read_text())
    assert report["mismatched"] and report["mismatched"][0]["key"] in str(error.value)
    assert not tf.io.gfile.glob(str(output_dir / "ckpt*"))


@pytest.mark.slow
def test_cli_reports_a_mismatch_in_one_line(tmp_path):
    prefix, _ = _saved_model_weights(tmp_path / "source", width_multiplier=0.25)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeplab_video.model.convert_checkpoint",
            f"--source={prefix}",
            f"--config_file={_TINY}",
            f"--output_dir={tmp_path / 'converted'}",
        ],
        cwd=conftest.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    line = conftest.the_error_line(result.stderr)
    assert f"checkpoint {prefix}" in line and "has another shape" in line
