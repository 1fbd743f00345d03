"""Tests for deeplab_video.data.synthetic_crowd: look-alikes that cross, hide and reappear."""

import dataclasses
import json
import os

import numpy as np
import pytest

from deeplab_video import datasets
from deeplab_video.data import sequence_reader, synthetic, synthetic_crowd

DIVISOR = datasets.SYNTHETIC.label_divisor
IGNORE = datasets.SYNTHETIC.ignore_label
SMALL = synthetic_crowd.CrowdConfig(num_sequences=3, num_shards=2)


@pytest.fixture(scope="module")
def crowd():
    return synthetic_crowd.generate_crowd_split(SMALL)


def _split(sequence):
    semantic, instance = np.divmod(sequence.panoptic, DIVISOR)
    return semantic, instance


def _ids(instance):
    return [int(i) for i in np.unique(instance) if i]


def test_deterministic_and_apart_from_the_main_splits(crowd):
    again = synthetic_crowd.generate_crowd_split(SMALL)
    for first, second in zip(crowd, again, strict=True):
        np.testing.assert_array_equal(first.images, second.images)
        np.testing.assert_array_equal(first.panoptic, second.panoptic)
    other = synthetic_crowd.generate_crowd_split(dataclasses.replace(SMALL, seed=1))
    assert not np.array_equal(other[0].images, crowd[0].images)
    val = synthetic.generate_split(synthetic.SyntheticConfig(num_val_sequences=1), "val")
    assert val[0].images.shape[1:] == crowd[0].images.shape[1:]
    assert not np.array_equal(val[0].images[0], crowd[0].images[0])


def test_many_look_alikes_of_one_class_and_colour(crowd):
    for sequence in crowd:
        frames = sequence.images.shape[0]
        assert SMALL.min_frames <= frames <= SMALL.max_frames
        assert sequence.images.shape == (frames, SMALL.height, SMALL.width, 3)
        semantic, instance = _split(sequence)
        things = np.isin(semantic, datasets.SYNTHETIC.thing_ids)
        assert np.all(instance[things] > 0) and np.all(instance[~things] == 0)
        ids = _ids(instance)
        assert SMALL.min_objects <= len(ids) <= SMALL.max_objects
        assert len(np.unique(semantic[things])) == 1, "one thing class per sequence"
        colours = []
        for instance_id in ids:
            frame = int(np.argmax((instance == instance_id).sum(axis=(1, 2))))
            pixels = instance[frame] == instance_id
            # Undo the scene's vertical shading (1 - 0.25 * row / height).
            row = np.argwhere(pixels)[:, 0].mean()
            shading = 1 - 0.25 * row / SMALL.height
            colours.append(np.median(sequence.images[frame][pixels], axis=0) / shading)
        spread = np.ptp(np.stack(colours), axis=0)
        assert spread.max() <= 8, f"look-alikes differ in colour by {spread}"


def test_objects_hide_behind_a_void_pole_and_reappear(crowd):
    hidden_then_back = 0
    for sequence in crowd:
        semantic, instance = _split(sequence)
        void_columns = np.all(semantic == IGNORE, axis=(0, 1))
        assert void_columns.any(), "every sequence has a full-height void pole"
        for instance_id in _ids(instance):
            seen = (instance == instance_id).any(axis=(1, 2))
            frames = np.flatnonzero(seen)
            gaps = np.diff(frames) - 1
            hidden_then_back += int(np.any((gaps >= 1) & (gaps <= 8)))
    assert hidden_then_back >= 3


def _whole_object_centres(instance, instance_id):
    """float [k, 3]: (frame, row, column) of the frames that show the whole object."""
    areas = (instance == instance_id).sum(axis=(1, 2))
    centres = []
    for frame in np.flatnonzero(areas >= 0.97 * areas.max()):
        centres.append((frame, *np.argwhere(instance[frame] == instance_id).mean(axis=0)))
    return np.array(centres)


def _swaps_sides(track_a, track_b):
    common = np.intersect1d(track_a[:, 0], track_b[:, 0])
    if len(common) < 2:
        return False
    column_a = {frame: column for frame, _, column in track_a}
    column_b = {frame: column for frame, _, column in track_b}
    before = column_a[common[0]] - column_b[common[0]]
    after = column_a[common[-1]] - column_b[common[-1]]
    return before * after < 0


def test_pairs_cross_at_nearly_constant_velocity(crowd):
    crossings = 0
    for sequence in crowd:
        _, instance = _split(sequence)
        tracks = [_whole_object_centres(instance, i) for i in _ids(instance)]
        for track in tracks:
            if len(track) >= 4:
                steps = np.diff(track[:, 2]) / np.diff(track[:, 0])
                assert np.ptp(steps) <= 0.2 * np.abs(steps).mean() + 1.0
        crossings += sum(_swaps_sides(a, b) for i, a in enumerate(tracks) for b in tracks[i + 1 :])
    assert crossings >= 2, "look-alikes must swap sides"


def test_ensure_writes_the_crowd_split_once(tmp_path):
    tiny = dataclasses.replace(
        SMALL, num_sequences=2, min_frames=3, max_frames=3, height=32, width=48, num_shards=1
    )
    root = tmp_path / "crowd"
    assert synthetic_crowd.ensure_crowd_dataset(root, tiny) == str(root)
    assert sorted(os.listdir(root)) == [
        "crowd-00000-of-00001.tfrecord",
        "images",
        "panoptic_maps",
        synthetic.MARKER_FILE,
    ]
    marker = json.loads((root / synthetic.MARKER_FILE).read_text())
    assert marker["split"] == "crowd" and marker["hidden_frames"] == [2.0, 4.0]
    assert sorted(os.listdir(root / "panoptic_maps" / "crowd")) == ["0000", "0001"]
    shard = root / "crowd-00000-of-00001.tfrecord"
    mtime = shard.stat().st_mtime_ns
    synthetic_crowd.ensure_crowd_dataset(root, tiny)
    assert shard.stat().st_mtime_ns == mtime
    read = list(sequence_reader.read_sequences([str(root / "crowd-*.tfrecord")]))
    expected = synthetic_crowd.generate_crowd_split(tiny)
    assert [r[0] for r in read] == ["0000", "0001"]
    for (_, frames, panoptic), sequence in zip(read, expected, strict=True):
        np.testing.assert_array_equal(frames, sequence.images)
        np.testing.assert_array_equal(panoptic, sequence.panoptic)
    with pytest.raises(ValueError, match="other directory"):
        synthetic_crowd.ensure_crowd_dataset(root, dataclasses.replace(tiny, seed=2))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("min_objects", 1, "min_objects"),
        ("max_objects", 3, "min_objects"),
        ("min_frames", 0, "min_frames"),
        ("hidden_frames", (3.0, 1.0), "hidden_frames"),
    ],
)
def test_inconsistent_parameters_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        synthetic_crowd.generate_crowd_split(dataclasses.replace(SMALL, **{field: value}))
