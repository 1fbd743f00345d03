"""Two logical CPU devices for the distribution tests of tests/trainer.

TensorFlow allows splitting the CPU into logical devices only before its runtime starts.
Test modules call `configure()` at import (pytest imports every module before running
any test); a test that needs two devices starts with `if rerun_isolated(__file__, name):
return`, which re-runs it in a fresh interpreter when another module already started the
runtime in this process.
"""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

NUM_DEVICES = 2
DEVICES = tuple(f"/cpu:{index}" for index in range(NUM_DEVICES))
_ISOLATED_ENV = "DEEPLAB_VIDEO_ISOLATED_TEST"


def configure() -> None:
    """Splits the CPU into NUM_DEVICES logical devices if the runtime has not started."""
    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES,
        )
    except RuntimeError:
        pass


def rerun_isolated(test_file: str, test_name: str) -> bool:
    """Runs the test in a subprocess when this process lacks the logical devices.

    Returns:
        False when this process has the devices (run the test here); True when the test
        ran (and passed) in a subprocess.
    """
    if len(tf.config.list_logical_devices("CPU")) >= NUM_DEVICES:
        return False
    if os.environ.get(_ISOLATED_ENV):
        pytest.fail("could not create the logical CPU devices in a fresh process")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{test_file}::{test_name}",
        ],
        env={**os.environ, _ISOLATED_ENV: "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return True
