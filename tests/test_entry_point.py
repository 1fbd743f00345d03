"""Tests of deeplab_video.entry_point (and the TensorFlow log default of the package).

A tiny CLI written to a temporary folder runs in subprocesses that never import
TensorFlow, so these tests stay fast.
"""

import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import deeplab_video
from deeplab_video import config, entry_point
from deeplab_video.data import panoptic_png, tfrecord, video_io
from deeplab_video.data.converters import common
from deeplab_video.evaluation import label_io
from deeplab_video.model import pretrained
from tests import conftest

_CLI = '''"""Tiny CLI of the entry-point tests."""

from absl import app, flags

from deeplab_video import entry_point


def define_flags():
    flags.DEFINE_string("case", None, "What to do.", required=True)


def main(argv):
    case = flags.FLAGS.case
    if case == "missing":
        open("/nonexistent/input.txt")
    if case == "value":
        raise ValueError("config.textproto:3: model_options.num_classes:\\n  must be > 0")
    if case == "bug":
        raise RuntimeError("a bug")
    if case == "usage":
        raise app.UsageError("give --case")
    print("ran", argv[1:])


def run():
    define_flags()
    entry_point.run(main)
'''
# What a console script's generated wrapper does.
_WRAPPER = "import sys\nfrom tiny_cli import run\nsys.exit(run())\n"


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny_cli.py").write_text(_CLI)
    (folder / "tiny-cli").write_text(_WRAPPER)
    return folder


def _run(cli_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": f"{cli_dir}:{conftest.REPO_ROOT}"}
    environment.pop(deeplab_video.DEBUG_ENV, None)
    environment.update(env)
    command = [sys.executable, str(cli_dir / "tiny-cli"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)


def test_help_of_a_console_script_shows_its_module_doc_and_flags(cli_dir):
    result = _run(cli_dir, "--help")
    assert "Tiny CLI of the entry-point tests." in result.stdout
    assert "--case: What to do." in result.stdout
    assert "--verbosity" not in result.stdout  # absl's flags are for --helpfull


def test_a_run_without_errors(cli_dir):
    result = _run(cli_dir, "--case=fine", "extra")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran ['extra']\n"


@pytest.mark.parametrize(
    "args, status, line",
    [
        (["--case=missing"], 1, "error: No such file or directory (/nonexistent/input.txt)"),
        (
            ["--case=value"],
            1,
            "error: config.textproto:3: model_options.num_classes:; must be > 0",
        ),
        (["--case=usage"], 1, "error: give --case (see --help)"),
        (["--cas=typo"], 1, "error: Unknown command line flag 'cas'. Did you mean: case ? "),
        ([], 1, "error: flag --case=None: Flag --case must have a value other than None."),
    ],
    ids=["missing_file", "value_error", "usage_error", "unknown_flag", "missing_flag"],
)
def test_user_errors_end_in_one_line(cli_dir, args, status, line):
    result = _run(cli_dir, *args)
    assert result.returncode == status
    assert conftest.the_error_line(result.stderr).startswith(line)


@pytest.mark.parametrize(
    "args, env",
    [(["--case=missing", "--verbosity=1"], {}), (["--case=missing"], {"DEEPLAB_VIDEO_DEBUG": "1"})],
    ids=["verbosity", "debug_env"],
)
def test_verbosity_or_debug_env_show_the_traceback(cli_dir, args, env):
    result = _run(cli_dir, *args, **env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_a_bug_keeps_its_traceback(cli_dir):
    result = _run(cli_dir, "--case=bug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr


@pytest.mark.parametrize(
    "error_class",
    [
        config.ConfigError,
        tfrecord.CorruptRecordError,
        video_io.VideoInputError,
        panoptic_png.PanopticPngError,
        pretrained.CheckpointMismatchError,
        pretrained.UnknownCheckpointFormatError,
        label_io.LabelFileError,
        common.ConversionError,
        FileNotFoundError,
    ],
)
def test_the_library_errors_are_user_errors(error_class):
    assert issubclass(error_class, entry_point.USER_ERRORS)


def test_user_error_messages():
    missing = FileNotFoundError(2, "No such file or directory", "/data/a.mp4")
    assert entry_point.user_error_message(missing) == "No such file or directory (/data/a.mp4)"
    assert entry_point.user_error_message(ValueError("a\n  b\n")) == "a; b"
    assert entry_point.user_error_message(RuntimeError("bug")) is None
    assert entry_point.user_error_message(KeyboardInterrupt()) is None


def _raised_in_tf_data(error: Exception) -> tf.errors.OpError:
    """The TensorFlow error that iterating a dataset whose generator raises `error` gives."""

    def generate():
        yield 1
        raise error

    dataset = tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec([], tf.int32))
    with pytest.raises(tf.errors.OpError) as raised:
        list(dataset)
    return raised.value


def test_user_errors_raised_inside_tf_data_keep_their_message():
    corrupt = tfrecord.CorruptRecordError("shard-0.tfrecord: record 3 is not an Example")
    wrapped = _raised_in_tf_data(corrupt)
    message = "shard-0.tfrecord: record 3 is not an Example"
    assert entry_point.user_error_message(wrapped) == message
    assert entry_point.user_error_message(_raised_in_tf_data(RuntimeError("bug"))) is None


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "2" if os.path.exists("/proc/driver/nvidia/version") else "3"),
        ({"TF_CPP_MIN_LOG_LEVEL": "1"}, "1"),
        ({"DEEPLAB_VIDEO_DEBUG": "1"}, "unset"),
    ],
    ids=["default", "environment_wins", "debug"],
)
def test_importing_the_package_sets_tensorflow_log_level(env, expected):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.pop(deeplab_video.DEBUG_ENV, None)
    environment.update(env, PYTHONPATH=str(conftest.REPO_ROOT))
    code = "import os, deeplab_video; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL', 'unset'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environment
    )
    assert result.stdout.strip() == expected, result.stderr


def test_tensorflow_info_lines_are_dropped_unless_verbose():
    inside = os.path.join(os.path.dirname(tf.__file__), "python", "checkpoint", "saver.py")

    def record(path: str, level: int) -> logging.LogRecord:
        return logging.LogRecord("absl", level, path, 1, "message", None, None)

    assert not entry_point._quiet_tensorflow_info(record(inside, logging.INFO))
    assert entry_point._quiet_tensorflow_info(record(inside, logging.WARNING))
    assert entry_point._quiet_tensorflow_info(record("/work/trainer/train_lib.py", logging.INFO))
