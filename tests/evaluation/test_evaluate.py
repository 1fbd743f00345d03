"""Tests of the evaluation CLI (deeplab_video.evaluation.evaluate), run as a subprocess."""

import json
import pathlib
import subprocess
import sys

from tests import conftest
from tests.evaluation.test_evaluate_lib import write_kitti_folders


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deeplab_video.evaluation.evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_cli_end_to_end(tmp_path):
    write_kitti_folders(tmp_path)
    output = tmp_path / "results.json"
    flags = [f"--gt_dir={tmp_path / 'gt'}", f"--pred_dir={tmp_path / 'pred'}"]
    run = _run_cli(*flags, "--dataset=kitti_step", f"--output_json={output}")
    assert run.returncode == 0, run.stderr
    assert "STQ" in run.stdout and "VPQ w=4" in run.stdout and "0011" in run.stdout
    results = json.loads(output.read_text())
    assert set(results) >= {"STQ", "AQ", "IoU", "VPQ", "VPQ_window1", "per_class"}
    # Explicit constants instead of a dataset give the same numbers.
    explicit = ["--num_classes=19", "--things=11,13", "--label_divisor=1000", "--ignore_label=255"]
    run = _run_cli(*flags, *explicit, f"--output_json={output}.2")
    assert run.returncode == 0, run.stderr
    assert json.loads(pathlib.Path(f"{output}.2").read_text())["STQ"] == results["STQ"]


def test_cli_names_the_missing_file_and_fails(tmp_path):
    write_kitti_folders(tmp_path)
    missing = tmp_path / "pred" / "0011" / "000002.png"
    missing.unlink()
    run = _run_cli(
        f"--gt_dir={tmp_path / 'gt'}", f"--pred_dir={tmp_path / 'pred'}", "--dataset=kitti_step"
    )
    assert run.returncode == 1
    gt_frame = tmp_path / "gt" / "0011" / "000002.png"
    expected = f"error: {missing}: missing prediction for ground-truth frame {gt_frame}"
    assert conftest.the_error_line(run.stderr) == expected
    run = _run_cli(f"--gt_dir={tmp_path / 'gt'}", f"--pred_dir={tmp_path / 'pred'}")
    assert run.returncode != 0
    error = "error: give --dataset or --num_classes (see --help)"
    assert conftest.the_error_line(run.stderr) == error
