"""Tests for benchmarks/paper_tables.py (the paper's Tables 1 and 2 in miniature)."""

import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.analysis import matching_space
from deeplab_video.data import synthetic, synthetic_crowd
from tests import conftest
from tests.analysis import analysis_fixtures as fixtures

_BENCHMARKS = conftest.REPO_ROOT / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))  # the script imports its sibling device_info
_SPEC = importlib.util.spec_from_file_location("paper_tables", _BENCHMARKS / "paper_tables.py")
paper_tables = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paper_tables)

TINY_TRAIN_VAL = synthetic.SyntheticConfig(
    num_train_sequences=1,
    num_val_sequences=1,
    min_frames=3,
    max_frames=3,
    height=32,
    width=48,
    num_train_shards=1,
    num_val_shards=1,
    write_pngs=False,
)
# One crowd video the oracle double can segment (fewer than 16 labels).
CROWD = synthetic_crowd.CrowdConfig(
    num_sequences=1,
    min_frames=16,
    max_frames=16,
    height=64,
    width=96,
    min_objects=6,
    max_objects=6,
    num_shards=1,
    write_pngs=False,
)


def test_settings_cover_table1_table2_and_both_memories_with_and_without_stitching():
    settings = paper_tables.tracking_settings()
    labels = [paper_tables.label(s) for s in settings]
    assert len(set(labels)) == len(settings) == 9
    assert labels[:4] == [
        "Video-Stitch only",
        "LA-MB tau=10, stitching on",
        "naive-MB tau=1, stitching on",
        "naive-MB tau=10, stitching on",
    ]
    table2 = paper_tables.table2_settings()
    assert set(table2) <= set(settings)
    assert [(s.memory, s.tau, s.stitching) for s in table2] == [
        ("naive-MB", 1000, False),
        ("naive-MB", 1, False),
        ("LA-MB", 1000, True),
        ("LA-MB", 10, True),
    ]


def test_experiment_options_change_only_the_cross_attention_steps_and_data():
    base = fixtures.options()
    options = paper_tables.experiment_options(base, "softmax", 20, "/data")
    assert options.model_options.transformer_decoder.cross_attention == "softmax"
    assert options.trainer_options.solver_options.training_number_of_steps == 20
    assert options.trainer_options.solver_options.warmup_steps == 5  # 50 would exceed 20
    assert list(options.train_dataset_options.file_pattern) == ["/data/train-*.tfrecord"]
    assert list(options.eval_dataset_options.file_pattern) == ["/data/val-*.tfrecord"]
    assert options.trainer_options.seed == base.trainer_options.seed
    assert base.model_options.transformer_decoder.cross_attention == "kmeans"  # untouched
    kmeans = paper_tables.experiment_options(base, "kmeans", 20, "/data")
    assert paper_tables.digest(kmeans) != paper_tables.digest(options)
    with pytest.raises(ValueError, match="softmax with 0 steps"):
        paper_tables.experiment_options(base, "softmax", 0, "/data")


@pytest.fixture(scope="module")
def crowd_split(tmp_path_factory):
    directory = tmp_path_factory.mktemp("crowd")
    synthetic_crowd.ensure_crowd_dataset(directory, CROWD)
    return str(directory / "crowd-*.tfrecord"), synthetic_crowd.generate_crowd_split(CROWD)[0]


@pytest.mark.slow
def test_with_perfect_segmentation_la_mb_keeps_look_alikes_apart(crowd_split):
    # Identical embeddings for all look-alikes: appearance cannot tell them apart (the
    # crowd split poses the problem LA-MB solves), the location term must.
    pattern, scene = crowd_split
    results = paper_tables.evaluate_split(
        fixtures.oracle_model(scene), fixtures.options(2), pattern, paper_tables.tracking_settings()
    )
    la = results["LA-MB tau=10, stitching on"]
    assert la["num_tracks"] == 6 and la["IoU"] > 0.5
    # The paper's comparison: LA-MB (after Video-Stitch) against IDOL's naive-MB (none).
    naive = results["naive-MB tau=1, stitching off"]
    assert 2 * la["IDSW"] < naive["IDSW"] and la["AQ"] > naive["AQ"]
    # The location term alone, both without Video-Stitch.
    la_alone = results["LA-MB tau=10, stitching off"]
    assert 2 * la_alone["IDSW"] < results["naive-MB tau=10, stitching off"]["IDSW"]
    space = {
        s.name: results[paper_tables.label(s)]["matching_space"]
        for s in paper_tables.table2_settings()
    }
    assert space["LA-MB tau=1000"]["average"] < space["naive-MB tau=1000"]["average"]
    assert space["LA-MB tau=10"]["max"] <= space["LA-MB tau=1000"]["max"]


def _checkpoint(model_dir):
    tf.train.Checkpoint(step=tf.Variable(1)).save(f"{model_dir}/ckpt")


def test_run_trains_once_and_evaluates_only_what_changed(tmp_path, monkeypatch, capsys):
    data_dir, crowd_dir = tmp_path / "data", tmp_path / "crowd"
    synthetic.ensure_synthetic_dataset(data_dir, TINY_TRAIN_VAL)
    synthetic_crowd.ensure_crowd_dataset(
        crowd_dir, dataclasses.replace(CROWD, min_frames=2, max_frames=2)
    )
    calls = {"train": [], "eval": []}

    def fake_train(mode, options, model_dir):
        assert mode == "train"
        calls["train"].append(options.model_options.transformer_decoder.cross_attention)
        _checkpoint(model_dir)
        return {}

    def fake_evaluate_split(model, options, pattern, settings, num_sequences):
        calls["eval"].append((model, pattern.split("/")[-1]))
        value = 0.5 if pattern.endswith("val-*.tfrecord") else 0.25
        summary = dataclasses.asdict(matching_space.summarize([0, 4, 8]))
        return {
            paper_tables.label(s): {
                "STQ": value,
                "AQ": value,
                "IoU": 1.0,
                "IDSW": 3,
                "num_tracks": 2,
                "matching_space": summary,
            }
            for s in settings
        }

    monkeypatch.setattr(paper_tables.train_lib, "run_experiment", fake_train)
    monkeypatch.setattr(paper_tables, "evaluate_split", fake_evaluate_split)
    monkeypatch.setattr(paper_tables, "load_model", lambda options, checkpoint: checkpoint)
    arguments = dict(
        config_file=str(fixtures.NEAR_ONLINE),
        steps=4,
        data_dir=str(data_dir),
        crowd_dir=str(crowd_dir),
    )
    output_dir = str(tmp_path / "out")
    summary = paper_tables.run(output_dir, **arguments)
    assert calls["train"] == ["kmeans", "latent_memory", "softmax"]
    assert [name for _, name in calls["eval"]] == ["val-*.tfrecord", "crowd-*.tfrecord"] * 3
    tables = capsys.readouterr().out
    assert "73.9" in tables and "(67.1)" in tables and "6.0 (19.7)" in tables
    assert "50.0" in tables and "25.0" in tables and "50.0 / 50.0 / 3" in tables
    assert json.loads((tmp_path / "out" / "results.json").read_text())["steps"] == 4
    assert summary["results"]["softmax"]["crowd"]["Video-Stitch only"]["STQ"] == 0.25

    # A re-run trains and evaluates nothing; other taus re-evaluate, other steps retrain.
    calls["train"].clear()
    calls["eval"].clear()
    paper_tables.run(output_dir, **arguments)
    assert calls == {"train": [], "eval": []}
    paper_tables.run(output_dir, cross_attentions=["kmeans"], taus=(1, 5, 1000), **arguments)
    assert calls["train"] == [] and len(calls["eval"]) == 2
    paper_tables.run(output_dir, cross_attentions=["softmax"], reevaluate=True, **arguments)
    assert calls["train"] == [] and len(calls["eval"]) == 4
    arguments["steps"] = 6
    paper_tables.run(output_dir, cross_attentions=["kmeans"], **arguments)
    assert calls["train"] == ["kmeans"] and len(calls["eval"]) == 6
    assert len(list((tmp_path / "out" / "models").iterdir())) == 4
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert np.isfinite(manifest["train/kmeans"]["seconds"])
