"""Tests for deeplab_video.trainer.summaries: loop lengths, scalar/image events, log lines."""

import logging

import numpy as np
import orbit
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.trainer import summaries


def _events(directory) -> list[tuple[int, str, tf.compat.v1.Summary.Value]]:
    """(step, tag, value) of every summary value in the event files under `directory`."""
    found = []
    for path in sorted(tf.io.gfile.glob(str(directory / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.append((event.step, value.tag, value))
    return found


def test_loop_lengths_stop_at_every_interval():
    lengths = summaries.loop_lengths(25, 100, 10, 0)
    assert [lengths(step) for step in (0, 5, 10, 20, 25, 95, 99)] == [10, 5, 10, 5, 5, 5, 1]
    with pytest.raises(ValueError):
        summaries.loop_lengths(0)


def test_interval_summary_manager_writes_multiples_only(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    manager = summaries.IntervalSummaryManager(str(tmp_path), step, interval=4)
    for value in range(1, 9):
        step.assign(value)
        manager.write_summaries({"losses/total_loss": float(value)})
    manager.flush()
    written = [(s, tag) for s, tag, _ in _events(tmp_path)]
    assert written == [(4, "losses/total_loss"), (8, "losses/total_loss")]


def test_progress_logger_line(caplog):
    step = tf.Variable(0, dtype=tf.int64)
    logger = summaries.ProgressLogger(step, total_steps=100, every_n_steps=10)
    # The absl logger has its own level (set from --verbosity by any absl app run earlier
    # in the process), so raise it for this block as well as the root logger's.
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        step.assign(5)
        logger({"losses/total_loss": 1.0})  # Not a multiple of 10: silent.
        step.assign(10)
        logger({"losses/total_loss": np.float32(0.25), "learning_rate": 0.001})
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("step 10/100 | learning_rate: 0.001 | total_loss: 0.25 |")
    assert "ETA " in lines[0]


def test_image_summaries(tmp_path):
    descriptor = datasets.get_descriptor("synthetic")
    frames = np.zeros((2, 5, 6, 3), np.uint8)
    ground_truth = np.full((2, 5, 6), 3 * descriptor.label_divisor + 1, np.int32)
    calls = []

    def predict(clip):
        calls.append(clip.shape)
        return np.zeros(clip.shape[:3], np.int32)  # all "sky"

    step = tf.Variable(0, dtype=tf.int64)
    manager = summaries.IntervalSummaryManager(str(tmp_path), step, interval=1)
    action = summaries.ImageSummaryAction(
        frames, ground_truth, predict, descriptor, manager, step, every_n_steps=3
    )
    for value in range(1, 7):
        step.assign(value)
        action({})
    assert calls == [(2, 5, 6, 3)] * 2
    events = _events(tmp_path)
    tags = sorted({tag for _, tag, _ in events})
    assert tags == ["images/frames", "images/ground_truth", "images/prediction"]
    assert sorted({s for s, _, _ in events}) == [3, 6]
    prediction = next(v for s, tag, v in events if tag == "images/prediction")
    # Two frames, each a PNG of the sky colour.
    images = tf.make_ndarray(prediction.tensor)
    assert len(images) == 2 + 2  # width and height strings, then one PNG per frame
    decoded = tf.io.decode_png(images[2]).numpy()
    np.testing.assert_array_equal(decoded[0, 0], descriptor.colormap[0])


def test_orbit_messages_are_logged_once_and_loop_outputs_only_when_verbose(
    caplog, capsys, monkeypatch
):
    monkeypatch.setattr(orbit.controller, "_log", orbit.controller._log)  # Restored after.
    summaries.log_orbit_messages_once()
    summaries.log_orbit_messages_once()
    # The absl logger's own level decides (earlier tests may leave it at WARNING).
    with caplog.at_level(logging.INFO, logger="absl"):
        orbit.controller._log("saved checkpoint to /tmp/model/ckpt-100.")
        orbit.controller._log("train | step:    100 | steps/sec:    1.6 | output: {'loss': 1}")
    assert [record.getMessage() for record in caplog.records] == [
        "saved checkpoint to /tmp/model/ckpt-100."
    ]
    with caplog.at_level(logging.DEBUG, logger="absl"):
        orbit.controller._log(" eval | step:    200 | eval time:   12.8 sec | output: {}")
    assert caplog.records[-1].getMessage().startswith(" eval | step:")
    assert capsys.readouterr().out == ""
