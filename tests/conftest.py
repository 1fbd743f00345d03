"""Shared pytest fixtures and helpers for the deeplab-video suite."""

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


@pytest.fixture
def write_config(tmp_path):
    """Writes textproto text to a temporary file and returns its path."""

    def write(text: str, name: str = "experiment.textproto") -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
