"""Tests for the trainer/train.py CLI: flags, usage errors and the three ways to start it."""

import subprocess
import sys

import pytest
from absl import app, flags

from deeplab_video.trainer import train
from tests import conftest


def test_extra_arguments_are_a_usage_error():
    with pytest.raises(app.UsageError, match="unexpected arguments: stray"):
        train.main(["train.py", "stray"])


def test_flags_cover_mode_paths_and_devices_only(cli_flags):
    cli_flags(train, "--config_file=c.textproto", "--model_dir=m")
    names = {flag.name for flag in flags.FLAGS.get_flags_for_module(train.__name__)}
    assert names == {"config_file", "mode", "model_dir", "num_gpus", "master", "strategy"}
    assert flags.FLAGS["mode"].parser.enum_values == [
        "train",
        "eval",
        "train_and_eval",
        "continuous_eval",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "trainer/train.py"],
        [sys.executable, "-m", "deeplab_video.trainer.train"],
        [str(conftest.REPO_ROOT / ".venv/bin/deeplab-video-train")],
    ],
    ids=["script", "module", "console_script"],
)
def test_entry_points_start_and_require_flags(command):
    result = subprocess.run(
        [*command, "--help"], cwd=conftest.REPO_ROOT, capture_output=True, text=True
    )
    assert "--config_file" in result.stdout and "--model_dir" in result.stdout, result.stderr
    assert "Trains and evaluates Video-kMaX" in result.stdout
    result = subprocess.run(command, cwd=conftest.REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "Flag --config_file must have a value" in conftest.the_error_line(result.stderr)
