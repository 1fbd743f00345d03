"""Every console script of setup.py, run as its generated wrapper runs it.

`--help` lists exactly the flags the script's module defines (no other CLI's), with the
module's docstring; a missing input gives one `error: ...` line naming it and a non-zero
exit status. Each run is a subprocess that imports TensorFlow, except the eval CLI's, so
only the eval CLI runs in the default suite.
"""

import ast
import importlib
import os
import re
import subprocess
import sys

import pytest
from absl import flags

import deeplab_video
from tests import conftest

# Per script: the arguments of a run whose input is missing; {missing} is a path that
# does not exist, {file} a regular file, {tmp} an empty folder.
MISSING_INPUT = {
    "deeplab-video-train": ["--config_file={missing}", "--model_dir={tmp}/model"],
    "deeplab-video-eval": ["--gt_dir={tmp}", "--pred_dir={missing}", "--dataset=kitti_step"],
    "deeplab-video-infer": [
        "--config_file=configs/synthetic/tiny_online.textproto",
        "--input={missing}",
        "--output_dir={tmp}/out",
    ],
    "deeplab-video-export": ["--config_file={missing}", "--output_dir={tmp}/export"],
    "deeplab-video-convert-checkpoint": [
        "--source={missing}",
        "--config_file=configs/synthetic/tiny_online.textproto",
        "--output_dir={tmp}/converted",
    ],
    # The generator reads nothing: its output folder cannot be made under a file.
    "deeplab-video-synthetic": ["--output_dir={file}/synthetic"],
    "deeplab-video-convert-kitti-step": ["--kitti_step_root={missing}", "--output_dir={tmp}/o"],
    "deeplab-video-convert-vipseg": ["--vipseg_root={missing}", "--output_dir={tmp}/o"],
    "deeplab-video-convert-cityscapes-vps": [
        "--cityscapes_vps_root={missing}",
        "--output_dir={tmp}/o",
    ],
}
FAST = {"deeplab-video-eval"}  # Imports no TensorFlow.
_HELP_FLAG = re.compile(r"^\s+--(?:\[no\])?(\w+):", re.MULTILINE)


def _console_scripts() -> dict[str, str]:
    """name -> "module:function", read from setup.py's entry_points."""
    tree = ast.parse((conftest.REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            specs = ast.literal_eval(node.value)["console_scripts"]
            return dict(spec.split("=", 1) for spec in specs)
    raise AssertionError("setup.py has no entry_points")


SCRIPTS = _console_scripts()
_PARAMS = [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in SCRIPTS]


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    """Runs the script as its console-script wrapper does (a __main__ without docstring)."""
    module, function = SCRIPTS[name].split(":")
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; {function}()"
    quiet = ("TF_CPP_MIN_LOG_LEVEL", deeplab_video.DEBUG_ENV)  # The defaults are tested.
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={key: value for key, value in os.environ.items() if key not in quiet},
        cwd=conftest.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_console_script_has_a_missing_input_case():
    assert set(SCRIPTS) == set(MISSING_INPUT)


def _defined_flags(module_name: str) -> set[str]:
    """The flags the CLI module's define_flags() defines or adopts (defined, then removed)."""
    module = importlib.import_module(module_name)
    before = set(flags.FLAGS)
    try:
        module.define_flags()
        return {flag.name for flag in flags.FLAGS.get_key_flags_for_module(module_name)}
    finally:
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)


@pytest.mark.parametrize("name", _PARAMS)
def test_help_lists_the_scripts_own_flags_only(name):
    module_name = SCRIPTS[name].split(":")[0]
    result = _run(name, "--help")
    assert set(_HELP_FLAG.findall(result.stdout)) == _defined_flags(module_name), result.stdout
    assert importlib.import_module(module_name).__doc__.splitlines()[0] in result.stdout
    if not os.path.exists("/proc/driver/nvidia/version"):
        assert result.stderr == ""  # No TensorFlow start-up lines without a GPU.


@pytest.mark.parametrize("name", _PARAMS)
def test_a_missing_input_gives_one_error_line(name, tmp_path):
    missing = tmp_path / "missing" / "input"
    (tmp_path / "file").write_text("")
    args = [
        arg.format(missing=missing, file=tmp_path / "file", tmp=tmp_path)
        for arg in MISSING_INPUT[name]
    ]
    result = _run(name, *args)
    assert result.returncode != 0
    line = conftest.the_error_line(result.stderr)
    assert str(missing if "{missing}" in " ".join(MISSING_INPUT[name]) else tmp_path) in line


@pytest.mark.slow
def test_train_rejects_the_eval_clis_flags():
    result = _run("deeplab-video-train", "--gt_dir=/tmp", "--config_file=c", "--model_dir=m")
    assert result.returncode != 0
    assert "Unknown command line flag 'gt_dir'" in conftest.the_error_line(result.stderr)
