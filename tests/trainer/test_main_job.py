"""Tests for deeplab_video.trainer.main_job (the README's main job)."""

import numpy as np

from deeplab_video import datasets
from deeplab_video.data import synthetic
from deeplab_video.protos import dataset_pb2
from deeplab_video.trainer import main_job

SYNTHETIC = datasets.SYNTHETIC


def test_majority_stuff_class_counts_pixels(tmp_path):
    config = synthetic.SyntheticConfig(
        num_train_sequences=2,
        num_val_sequences=1,
        min_frames=3,
        max_frames=3,
        height=33,
        width=41,
        num_train_shards=1,
        num_val_shards=1,
    )
    synthetic.ensure_synthetic_dataset(tmp_path, config)
    options = dataset_pb2.DatasetOptions(
        dataset="synthetic", file_pattern=[str(tmp_path / "train-*.tfrecord")]
    )
    majority = main_job.majority_stuff_class(options, SYNTHETIC)
    assert majority in SYNTHETIC.stuff_ids
    counts = np.zeros(SYNTHETIC.num_classes, np.int64)
    for sequence in synthetic.generate_split(config, "train"):
        semantic = np.asarray(sequence.panoptic) // SYNTHETIC.label_divisor
        counts += np.bincount(
            semantic[semantic < SYNTHETIC.num_classes].ravel(), minlength=SYNTHETIC.num_classes
        )
    stuff = list(SYNTHETIC.stuff_ids)
    assert majority == stuff[int(np.argmax(counts[stuff]))]


def test_majority_predictor_fills_every_pixel():
    predictor = main_job.MajorityStuffPredictor(2 * SYNTHETIC.label_divisor)
    frames = [np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)]
    predictions = list(predictor.stream(iter(frames)))
    assert len(predictions) == 2
    for prediction in predictions:
        np.testing.assert_array_equal(prediction.panoptic, np.full((4, 5), 2000, np.int32))


def test_table_lists_both_columns():
    table = main_job.format_table({"STQ": 0.5, "AQ": 0.25}, {"STQ": 0.1})
    lines = table.splitlines()
    assert "Video-kMaX" in lines[0] and "majority-stuff" in lines[0]
    assert lines[2].split() == ["STQ", "0.5000", "0.1000"]
    assert lines[3].split() == ["AQ", "0.2500", "nan"]
