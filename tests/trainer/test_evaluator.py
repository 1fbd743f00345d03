"""Tests for deeplab_video.trainer.evaluator with a video-runner double.

The evaluation frames encode their own labels (red = semantic class, green = instance id),
so the runner double can "predict" any chosen corruption of the ground truth.
"""

import json
import types

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.data import tfrecord
from deeplab_video.evaluation import label_io
from deeplab_video.protos import config_pb2
from deeplab_video.trainer import evaluator as evaluator_lib

DESCRIPTOR = datasets.get_descriptor("synthetic")
DIVISOR = DESCRIPTOR.label_divisor
NUM_FRAMES = 4


def _sequence_labels(sequence: int) -> np.ndarray:
    """int32 [NUM_FRAMES, 6, 8]: sky on top, road below, a disc (id 1) moving right."""
    panoptic = np.full((NUM_FRAMES, 6, 8), 2 * DIVISOR, np.int32)
    panoptic[:, :2] = 0 * DIVISOR
    for t in range(NUM_FRAMES):
        panoptic[t, 3:5, t + sequence : t + sequence + 2] = 3 * DIVISOR + 1
    return panoptic


def _write_dataset(tmp_path, num_sequences: int = 2) -> str:
    with tfrecord.ShardedWriter(str(tmp_path), "val", 1) as writer:
        for sequence in range(num_sequences):
            for t, panoptic in enumerate(_sequence_labels(sequence)):
                image = np.zeros((*panoptic.shape, 3), np.uint8)
                image[..., 0] = panoptic // DIVISOR
                image[..., 1] = panoptic % DIVISOR
                record = tfrecord.encode_frame(image, panoptic, f"{sequence:04d}", t)
                writer.write(0, record)
    return str(tmp_path / "val-*.tfrecord")


class _DecodingRunner:
    """Runner double: reads the labels out of the frames; optionally renumbers instances.

    Like VideoRunner, it calls its clip observer once per (one-frame) clip.
    """

    def __init__(self, instance_offset_per_frame: int = 0, crop: int = 0, clip_observer=None):
        self._offset = instance_offset_per_frame
        self._crop = crop
        self._observer = clip_observer

    def stream(self, frames):
        for t, image in enumerate(frames):
            if self._observer is not None:
                self._observer("clip", "outputs", t, 1)
            semantic = image[..., 0].astype(np.int32)
            instance = image[..., 1].astype(np.int32)
            instance = np.where(instance > 0, instance + self._offset * t, 0)
            panoptic = semantic * DIVISOR + instance
            yield types.SimpleNamespace(panoptic=panoptic[self._crop :])


def _options(pattern: str, **evaluator_fields) -> config_pb2.ExperimentOptions:
    options = config_pb2.ExperimentOptions()
    options.eval_dataset_options.dataset = "synthetic"
    options.eval_dataset_options.file_pattern.append(pattern)
    options.evaluator_options.metrics.vpq_window_sizes.extend([1, 2])
    for name, value in evaluator_fields.items():
        if isinstance(value, config_pb2.MetricOptions):
            options.evaluator_options.metrics.CopyFrom(value)
        else:
            setattr(options.evaluator_options, name, value)
    return options


def _evaluate(tmp_path, runner, steps=-1, recorder=None, **evaluator_fields):
    options = _options(_write_dataset(tmp_path / "data"), **evaluator_fields)
    step = tf.Variable(7, dtype=tf.int64)
    evaluator = evaluator_lib.Evaluator(runner, options, step, str(tmp_path / "model"), recorder)
    return evaluator.evaluate(tf.constant(steps))


def test_perfect_prediction_scores_one_everywhere(tmp_path):
    scalars = _evaluate(tmp_path, _DecodingRunner())
    for key in ("STQ", "AQ", "IoU", "VPQ", "VPQ_window1", "VPQ_window2", "PQ"):
        assert scalars[key] == pytest.approx(1.0), key
    assert scalars["num_sequences"] == 2 and scalars["num_frames"] == 2 * NUM_FRAMES
    assert scalars[evaluator_lib.CLASS_IOU_PREFIX + "disc"] == pytest.approx(1.0)
    # Classes absent from both ground truth and prediction have no IoU scalar.
    assert evaluator_lib.CLASS_IOU_PREFIX + "box" not in scalars
    saved = json.loads((tmp_path / "model/eval/metrics.json").read_text())
    assert saved["step"] == 7 and saved["STQ"] == pytest.approx(1.0)
    assert [s["sequence"] for s in saved["per_sequence"]] == ["0000", "0001"]
    per_step = json.loads((tmp_path / "model/eval/metrics_step_00000007.json").read_text())
    assert per_step == saved


def test_identity_switches_lower_association_only(tmp_path):
    # The disc gets a new id in every frame: segmentation and frame PQ stay perfect, but
    # association (AQ) and VPQ over windows longer than one frame drop.
    scalars = _evaluate(tmp_path, _DecodingRunner(instance_offset_per_frame=1))
    assert scalars["IoU"] == pytest.approx(1.0)
    assert scalars["PQ"] == pytest.approx(1.0)
    assert scalars["VPQ_window1"] == pytest.approx(1.0)
    assert scalars["AQ"] < 0.5
    assert scalars["VPQ_window2"] < scalars["VPQ_window1"]
    assert scalars["STQ"] == pytest.approx(np.sqrt(scalars["AQ"] * scalars["IoU"]))


def test_sequence_limits(tmp_path):
    assert _evaluate(tmp_path / "a", _DecodingRunner(), num_eval_sequences=1)["num_sequences"] == 1
    assert _evaluate(tmp_path / "b", _DecodingRunner(), steps=1)["num_sequences"] == 1
    with pytest.raises(ValueError, match="no evaluation frame"):
        _evaluate(tmp_path / "c", _DecodingRunner(), num_eval_sequences=0)


def test_frame_pq_can_be_turned_off(tmp_path):
    options_pq_off = config_pb2.MetricOptions(frame_pq=False, vpq_window_sizes=[1, 2])
    scalars = _evaluate(tmp_path, _DecodingRunner(), metrics=options_pq_off)
    assert "PQ" not in scalars and scalars["STQ"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "model/eval/metrics.json").read_text())
    assert saved["PQ"] is None


def test_predictions_are_saved_as_pngs(tmp_path):
    _evaluate(tmp_path, _DecodingRunner(), save_predictions=True)
    path = tmp_path / "model/eval/predictions_step_00000007/0001/000002.png"
    saved = label_io.read_label_map(path, "kitti_step", DESCRIPTOR)
    np.testing.assert_array_equal(saved, _sequence_labels(1)[2])


def test_prediction_of_another_size_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="has shape"):
        _evaluate(tmp_path, _DecodingRunner(crop=1))


class _FakeCentres:
    """Stands in for query_centres.QueryCentres: counts observed clips."""

    def __init__(self, descriptor):
        assert descriptor is DESCRIPTOR
        self.clips = []

    def __call__(self, clip, outputs, first_frame_index, num_frames):
        self.clips.append(first_frame_index)

    def to_json(self):
        return {"num_clips": len(self.clips), "unused": float("nan")}

    def plot(self, path, title):
        with open(path, "w") as f:
            f.write(title)


def test_query_centres_are_recorded_during_evaluation_only(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator_lib.query_centres, "QueryCentres", _FakeCentres)
    recorder = evaluator_lib.QueryCentreRecorder(DESCRIPTOR)
    recorder("clip", "outputs", 0, 1)  # Outside an evaluation: ignored.
    runner = _DecodingRunner(clip_observer=recorder)
    _evaluate(tmp_path, runner, recorder=recorder)
    prefix = tmp_path / "model/eval/query_centres_step_00000007"
    assert json.loads(prefix.with_suffix(".json").read_text()) == {
        "num_clips": 2 * NUM_FRAMES,
        "unused": None,
    }
    assert prefix.with_suffix(".png").read_text().endswith("step 7")
    assert recorder.centres is None
