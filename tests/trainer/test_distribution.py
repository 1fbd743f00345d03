"""Tests for deeplab_video.trainer.distribution: strategy choice and batch splitting."""

import pytest
import tensorflow as tf

from deeplab_video.protos import config_pb2
from deeplab_video.trainer import distribution
from tests.trainer import logical_cpus

logical_cpus.configure()


def _options(**fields) -> config_pb2.DistributionOptions:
    return config_pb2.DistributionOptions(**fields)


def test_flags_override_config():
    options = _options(strategy="multi_worker_mirrored")
    assert distribution.resolve_strategy_name(options) == "multi_worker_mirrored"
    assert distribution.resolve_strategy_name(options, num_gpus=4) == "mirrored"
    assert distribution.resolve_strategy_name(options, num_gpus=1) == "multi_worker_mirrored"
    assert distribution.resolve_strategy_name(options, master="grpc://10.0.0.2:8470") == "tpu"
    assert distribution.resolve_strategy_name(options, num_gpus=4, strategy="default") == (
        "default"
    )


def test_bad_names_and_contradictions():
    with pytest.raises(ValueError, match="unknown distribution strategy 'horovod'"):
        distribution.resolve_strategy_name(_options(), strategy="horovod")
    with pytest.raises(ValueError, match="names a TPU"):
        distribution.resolve_strategy_name(_options(), master="my-tpu", strategy="mirrored")
    with pytest.raises(ValueError, match="all_reduce_alg 'butterfly'"):
        distribution.create_strategy(_options(all_reduce_alg="butterfly"))
    with pytest.raises(ValueError, match="'ring' is a multi-worker collective"):
        distribution.create_strategy(_options(strategy="mirrored", all_reduce_alg="ring"))


def test_default_strategy_has_one_replica():
    strategy = distribution.create_strategy(_options())
    assert strategy.num_replicas_in_sync == 1
    assert (
        distribution.per_replica_batch_size(
            config_pb2.DatasetOptions(dataset="synthetic", batch_size=3), strategy
        )
        == 3
    )


def test_too_many_gpus_is_an_error():
    with pytest.raises(ValueError, match="8 GPUs requested"):
        distribution.create_strategy(_options(strategy="mirrored"), num_gpus=8)


def test_multi_worker_rejects_malformed_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribution.create_strategy(_options(strategy="multi_worker_mirrored"))


def test_mirrored_over_logical_cpus_splits_the_batch():
    if logical_cpus.rerun_isolated(__file__, "test_mirrored_over_logical_cpus_splits_the_batch"):
        return
    strategy = distribution.create_strategy(_options(strategy="mirrored"))
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == logical_cpus.NUM_DEVICES
    dataset = config_pb2.DatasetOptions(dataset="synthetic", batch_size=4)
    assert distribution.per_replica_batch_size(dataset, strategy) == 2
    dataset.batch_size = 3
    with pytest.raises(ValueError, match="batch_size 3 .* not divisible by the 2 replicas"):
        distribution.per_replica_batch_size(dataset, strategy)
