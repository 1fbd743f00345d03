"""Tests for deeplab_video.analysis.matching_space (supplementary Table 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from deeplab_video.analysis import matching_space
from deeplab_video.data import synthetic
from deeplab_video.post_processing import video_tracker
from tests.analysis import analysis_fixtures as fixtures


def _by_cell(summaries):
    return {(s.memory, s.column): summary for s, summary in summaries.items()}


def test_summary_averages_the_steps_that_form_a_matrix():
    summary = matching_space.summarize([0, 6, 0, 12, 3])
    assert summary == matching_space.SizeSummary(
        average=7.0, max=12, num_steps=5, num_matching_steps=3, average_all_steps=4.2
    )
    assert matching_space.summarize([]) == matching_space.SizeSummary(0.0, 0, 0, 0, 0.0)
    assert matching_space.summarize([0, 0]).average == 0.0


def test_settings_and_their_options():
    settings = matching_space.table_settings(naive_best_tau=2, la_best_tau=7, large_tau=500)
    assert [(s.memory, s.column, s.tau, s.stitching) for s in settings] == [
        ("naive-MB", "large", 500, False),
        ("naive-MB", "best", 2, False),
        ("LA-MB", "large", 500, None),
        ("LA-MB", "best", 7, None),
    ]
    base = fixtures.options()
    base.evaluator_options.memory_buffer.similarity_threshold = 0.6
    naive = matching_space.setting_options(base, settings[1])
    la = matching_space.setting_options(base, settings[2])
    assert naive.evaluator_options.memory_buffer.kind == "naive"
    assert naive.evaluator_options.memory_buffer.refresh_frames == 2
    assert not naive.evaluator_options.stitching.enabled
    assert la.evaluator_options.memory_buffer.kind == "location_aware"
    assert la.evaluator_options.memory_buffer.refresh_frames == 500
    assert la.evaluator_options.stitching.enabled
    for copy in (naive, la):
        assert copy.evaluator_options.memory_buffer.similarity_threshold == pytest.approx(0.6)
    assert base.evaluator_options.memory_buffer.refresh_frames == 10  # untouched
    with pytest.raises(ValueError, match="at least 1"):
        matching_space.table_settings(naive_best_tau=0)


def test_table_text_has_ours_and_the_papers():
    settings = matching_space.table_settings()
    summaries = {s: matching_space.summarize([0, 2 * (i + 1), 4]) for i, s in enumerate(settings)}
    lines = matching_space.format_table(summaries).splitlines()
    assert "naive-MB tau=1000" in lines[1] and "LA-MB tau=10" in lines[1]
    assert lines[3].split() == ["naive-MB", "3.0", "(67.1)", "4", "(336)", "4.0", "(25.1)"] + [
        "4",
        "(196)",
    ]
    assert lines[4].split() == ["LA-MB", "5.0", "(19.7)", "6", "(94)", "6.0", "(2.8)", "8", "(24)"]


@pytest.mark.parametrize(
    "clip_length, naive, location_aware",
    [
        # Online: no stitching, so LA-MB decodes both squares too: M = N = 2 after clip 0.
        (1, [0, 4, 4, 4], [0, 4, 4, 4]),
        # Near-online: LA-MB stitches both squares (N = 0); naive-MB decodes them.
        (2, [0, 4, 4], [0, 0, 0]),
    ],
)
def test_sizes_are_memory_entries_times_decoded_objects(clip_length, naive, location_aware):
    settings = matching_space.table_settings()
    sizes = matching_space.measure(
        fixtures.colour_model,
        fixtures.options(clip_length),
        [fixtures.two_squares(4), fixtures.two_squares(3)],
        [settings[0], settings[2]],
    )
    second_video = {1: [0, 4, 4], 2: [0, 4]}[clip_length]
    assert sizes[settings[0]] == naive + second_video
    assert sizes[settings[2]] == location_aware + {1: second_video, 2: [0, 0]}[clip_length]


def test_location_aware_space_is_smaller_on_a_crowded_scene():
    rng = np.random.default_rng([7, 1])
    scene = synthetic.generate_sequence(
        rng, "0000", num_frames=12, height=64, width=96, max_objects=6, crossing=True
    )
    assert len(np.unique(scene.panoptic % 1000)) >= 5  # crowded: several things at once
    settings = matching_space.table_settings()
    sizes = matching_space.measure(
        fixtures.oracle_model(scene), fixtures.options(2), [scene.images], settings
    )
    cells = _by_cell({s: matching_space.summarize(v) for s, v in sizes.items()})
    for column in ("large", "best"):
        naive, la = cells[("naive-MB", column)], cells[("LA-MB", column)]
        assert la.average_all_steps <= naive.average_all_steps
        assert la.max <= naive.max
    assert cells[("LA-MB", "large")].average_all_steps < cells[("naive-MB", "large")].average
    assert cells[("naive-MB", "large")].max >= 16  # at least 4 entries x 4 objects
    # Tracking every setting on shared clips gives the sizes of a runner per setting.
    la_large = settings[2]
    runner = video_tracker.VideoRunner(
        fixtures.oracle_model(scene), matching_space.setting_options(fixtures.options(2), la_large)
    )
    runner.run_sequence(scene.images)
    assert runner.matching_space_sizes == sizes[la_large]
    # A shorter memory never holds more entries.
    for memory in ("naive-MB", "LA-MB"):
        assert cells[(memory, "best")].max <= cells[(memory, "large")].max


def test_setting_trackers_give_the_ids_of_a_runner_per_setting():
    rng = np.random.default_rng([7, 1])
    scene = synthetic.generate_sequence(
        rng, "0000", num_frames=9, height=64, width=96, max_objects=6, crossing=True
    )
    options = fixtures.options(2)
    settings = [
        matching_space.Setting(matching_space.NO_MEMORY, "best", 10, True),
        matching_space.Setting(matching_space.NAIVE, "best", 1, False),
        matching_space.Setting(matching_space.LOCATION_AWARE, "best", 10, False),
    ]
    trackers = matching_space.SettingTrackers(options, settings)
    runner = video_tracker.VideoRunner(
        fixtures.oracle_model(scene), options, clip_observer=trackers
    )
    tracked = {s: [] for s in settings}
    trackers.start_video()
    for prediction in runner.stream(scene.images):
        row = prediction.frame_index - trackers.first_frame_index
        for setting in settings:
            tracked[setting].append(trackers.panoptic[setting][row].numpy())
    videos = {}
    for setting in settings:
        alone = video_tracker.VideoRunner(
            fixtures.oracle_model(scene), matching_space.setting_options(options, setting)
        )
        videos[setting] = alone.run_sequence(scene.images)
        np.testing.assert_array_equal(np.stack(tracked[setting]), videos[setting])
    # The settings do give different ids (the comparison above is not vacuous).
    assert not np.array_equal(videos[settings[0]], videos[settings[1]])


def test_cli_flags_print_the_table_and_write_json(tmp_path, capsys):
    config_file = fixtures.write_dataset(tmp_path, [fixtures.two_squares(4)] * 3)
    flag_values = flags.FlagValues()
    matching_space.define_flags(flag_values)
    output = tmp_path / "table2.json"
    flag_values(
        [
            "matching_space",
            f"--config_file={config_file}",
            "--num_sequences=2",
            "--la_best_tau=3",
            f"--output_json={output}",
        ]
    )
    matching_space.run_from_flags(flag_values, model=fixtures.colour_model)
    table = capsys.readouterr().out
    assert "(67.1)" in table and "LA-MB tau=3" in table
    results = json.loads(output.read_text())
    assert results["sequence_ids"] == ["0000", "0002"]
    naive_large = results["settings"][0]
    assert naive_large["memory"] == "naive-MB" and naive_large["tau"] == 1000
    assert naive_large["sizes"] == [0, 4, 4] * 2
    assert naive_large["average"] == 4.0 and naive_large["max"] == 4
    assert naive_large["paper_average"] == 67.1
    assert [s["tau"] for s in results["settings"]] == [1000, 1, 1000, 3]


@pytest.mark.slow
def test_command_line_with_the_real_tiny_model(tmp_path):
    config_file = fixtures.write_dataset(tmp_path, [fixtures.two_squares(3, 33, 50)])
    output = tmp_path / "table2.json"
    command = [
        sys.executable,
        "-m",
        "deeplab_video.analysis.matching_space",
        f"--config_file={config_file}",
        f"--output_json={output}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "naive-MB" in result.stdout and "(19.7)" in result.stdout
    assert len(json.loads(output.read_text())["settings"]) == 4
