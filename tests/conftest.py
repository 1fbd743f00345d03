"""Shared pytest fixtures and helpers for the deeplab-video suite."""

import pathlib
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from absl import flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


def the_error_line(stderr: str) -> str:
    """The one `error: ...` line a CLI ends with on a user error (logs may precede it)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-3000:]
    return errors[0]


@pytest.fixture
def write_config(tmp_path):
    """Writes textproto text to a temporary file and returns its path."""

    def write(text: str, name: str = "experiment.textproto") -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli_flags() -> Iterator[Callable[..., None]]:
    """Defines a CLI module's flags in absl's FLAGS and parses a command line, for one test.

    `cli_flags(module, "--flag=value", ...)`; the flags are removed after the test, so CLIs
    that share flag names can be tested in one process.
    """
    defined: list[str] = []

    def define_and_parse(module: ModuleType, *args: str) -> None:
        if not defined:
            before = set(flags.FLAGS)
            module.define_flags()
            defined.extend(set(flags.FLAGS) - before)
        flags.FLAGS.unparse_flags()
        flags.FLAGS([module.__name__, *args])

    yield define_and_parse
    flags.FLAGS.unparse_flags()
    for name in defined:
        delattr(flags.FLAGS, name)
