"""Tests for deeplab_video.analysis.query_centres (supplementary Fig. 1)."""

import json

import numpy as np
import pytest
from absl import flags
from matplotlib import image

from deeplab_video.analysis import query_centres
from tests.analysis import analysis_fixtures as fixtures

DIVISOR = 1000


def test_query_map_things_from_rows_stuff_from_the_best_query_of_its_class():
    panoptic = np.zeros([1, 8, 8], np.int32)  # sky
    panoptic[:, :, 4:] = fixtures.GRASS * DIVISOR
    panoptic[:, 2:4, 5:7] = fixtures.DISC * DIVISOR + 1
    panoptic[:, 7, 7] = 255 * DIVISOR  # void
    query_indices = np.array([2, -1])
    classes = [fixtures.SKY, fixtures.GRASS, fixtures.DISC, fixtures.SKY]
    class_logits = 20.0 * np.eye(fixtures.NUM_CLASSES + 1)[classes]
    # An 8 x 8 frame is padded to 33 x 33: 9 x 9 cells, pixel y -> cell round(y / 4).
    mask_logits = np.zeros([1, 9, 9, 4], np.float32)
    mask_logits[..., 0] = 1.0
    mask_logits[:, 0, 0, 3] = 2.0  # the second sky query wins cell (0, 0): pixels 0-1
    result = query_centres.segment_query_map(
        panoptic, query_indices, mask_logits, class_logits, fixtures.DESCRIPTOR
    )
    expected = np.zeros([1, 8, 8], np.int32)
    expected[:, :2, :2] = 3
    expected[:, :, 4:] = 1
    expected[:, 2:4, 5:7] = 2
    expected[:, 7, 7] = -1
    np.testing.assert_array_equal(result, expected)


def test_frame_centres_by_hand():
    query_map = np.array([[[0, 0, 1, 1], [0, 0, 1, -1]], [[1, 1, 1, 1], [1, 1, 1, 1]]])
    centres, present = query_centres.frame_centres(query_map, num_queries=3)
    np.testing.assert_array_equal(present, [[True, True, False], [False, True, False]])
    np.testing.assert_allclose(centres[0, 0], [0.25, 0.5])
    np.testing.assert_allclose(centres[0, 1], [8.5 / 3 / 4, 2.5 / 3 / 2])
    np.testing.assert_allclose(centres[1, 1], [0.5, 0.5])
    np.testing.assert_array_equal(centres[:, 2], 0.0)


def test_accumulator_means_segment_centres_and_checks_the_query_count():
    centres = query_centres.QueryCentres(fixtures.DESCRIPTOR)
    assert centres.centres.shape == (0, 2) and centres.to_json()["queries"] == []
    centres.add(np.array([[[0, 0, 1, 1]]]), num_queries=3)
    centres.add(np.array([[[1, 1, 1, 1]], [[-1, -1, 0, 0]]]), num_queries=3)
    np.testing.assert_array_equal(centres.counts, [2, 2, 0])
    np.testing.assert_allclose(centres.centres[:2], [[0.5, 0.5], [0.625, 0.5]])
    assert np.isnan(centres.centres[2]).all()
    queries = centres.to_json()["queries"]
    assert queries[2] == {"query": 2, "x": None, "y": None, "num_segments": 0}
    assert queries[1]["x"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="4 queries after 3"):
        centres.add(np.zeros([1, 1, 4], np.int64), num_queries=4)


def test_a_query_that_segments_the_left_half_is_on_the_left():
    height, width, num_frames = 32, 64, 3
    frames = np.full((num_frames, height, width, 3), 90, np.uint8)
    for t in range(num_frames):
        # A red disc moving right, 9 x 9 pixels: its stride-4 samples are symmetric.
        frames[t, 8:17, 40 + 4 * t : 49 + 4 * t] = (255, 0, 0)
    centres = query_centres.compute(
        fixtures.halves_model(width), fixtures.options(2), [frames, frames[:2]]
    )
    # Clips [0, 1] and [1, 2] of the first video, [0, 1] of the second: 6 real frames.
    np.testing.assert_array_equal(centres.counts, [6, 6, 6])
    (left_x, left_y), (right_x, right_y), (disc_x, disc_y) = centres.centres
    assert 0.2 < left_x < 0.27 and right_x > 0.7
    assert left_y == pytest.approx(0.5, abs=0.02)
    # Disc centres: x = (44.5 + 4t) / 64 over frames 0, 1, 1, 2, 0, 1; y = 12.5 / 32.
    expected_x = np.mean([44.5 + 4 * t for t in (0, 1, 1, 2, 0, 1)]) / 64
    assert disc_x == pytest.approx(expected_x, abs=0.005)
    assert disc_y == pytest.approx(12.5 / 32, abs=0.005)
    assert right_y > 0.5  # the disc takes pixels from the upper right


def test_cli_writes_the_plot_and_the_json(tmp_path):
    config_file = fixtures.write_dataset(tmp_path, [fixtures.two_squares(3)] * 2)
    flag_values = flags.FlagValues()
    query_centres.define_flags(flag_values)
    output_dir = tmp_path / "figure"
    flag_values(["query_centres", f"--config_file={config_file}", f"--output_dir={output_dir}"])
    results = query_centres.run_from_flags(flag_values, model=fixtures.halves_model(70))
    plot = image.imread(output_dir / query_centres.PLOT_FILE)
    assert plot.shape[0] > 100 and plot.shape[1] > 100
    written = json.loads((output_dir / query_centres.JSON_FILE).read_text())
    assert written == json.loads(json.dumps(results))
    assert written["num_queries"] == 3 and written["frame_size"] == [40, 70]
    left, right, disc = written["queries"]
    assert left["x"] < 0.5 < right["x"]
    assert disc["num_segments"] == 8  # two clips of two frames, two videos
