"""Creates the tf.distribute strategy of a run and splits the global batch over replicas.

The strategy comes from `trainer_options.distribution` of the config; the command-line
flags of train.py (--num_gpus, --master, --strategy) override it when given:

- "default": TensorFlow's default strategy (one replica on the default device);
- "mirrored": synchronous data parallelism over the GPUs of one machine (all visible GPUs
  when `num_gpus` is 0); on a machine without GPUs it mirrors over the logical CPU devices;
- "multi_worker_mirrored": synchronous data parallelism over the workers described by the
  TF_CONFIG environment variable (one process per worker);
- "tpu": a TPU (address from --master or `distribution.tpu`).
"""

import json
import os

import tensorflow as tf
from absl import logging

from deeplab_video import config
from deeplab_video.protos import config_pb2

ALL_REDUCE_ALGORITHMS = ("auto", "nccl", "ring")

_COMMUNICATION_IMPLEMENTATIONS = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
}


def resolve_strategy_name(
    options: config_pb2.DistributionOptions,
    num_gpus: int | None = None,
    master: str | None = None,
    strategy: str | None = None,
) -> str:
    """Decides which strategy a run uses: flags first, then the config.

    Args:
        options: `trainer_options.distribution` of the config.
        num_gpus: --num_gpus (None when not given): more than one GPU means "mirrored".
        master: --master (None or "" when not given): a TPU address means "tpu".
        strategy: --strategy (None or "" when not given): names the strategy directly.

    Returns:
        One of `config.STRATEGIES`.

    Raises:
        ValueError: the name is unknown, or the flags contradict each other.
    """
    if strategy:
        name = strategy
    elif master:
        name = "tpu"
    elif num_gpus is not None and num_gpus > 1:
        name = "mirrored"
    else:
        name = options.strategy
    if name not in config.STRATEGIES:
        raise ValueError(
            f"unknown distribution strategy '{name}'; expected one of "
            + ", ".join(config.STRATEGIES)
        )
    if master and name != "tpu":
        raise ValueError(f"--master={master} names a TPU but the strategy is '{name}'")
    return name


def create_strategy(
    options: config_pb2.DistributionOptions,
    num_gpus: int | None = None,
    master: str | None = None,
    strategy: str | None = None,
) -> tf.distribute.Strategy:
    """Creates the distribution strategy of a run.

    Args:
        options: `trainer_options.distribution` of the config.
        num_gpus: --num_gpus override of `options.num_gpus` (None: use the config).
        master: --master override of `options.tpu` (None or "": use the config).
        strategy: --strategy override of `options.strategy` (None or "": use the config).

    Returns:
        The strategy; create every model, optimizer and metric inside its `scope()`.

    Raises:
        ValueError: unknown strategy or all-reduce algorithm, more GPUs requested than are
            visible, or TF_CONFIG that is not valid JSON.
    """
    name = resolve_strategy_name(options, num_gpus, master, strategy)
    if options.all_reduce_alg not in ALL_REDUCE_ALGORITHMS:
        raise ValueError(
            f"unknown trainer_options.distribution.all_reduce_alg "
            f"'{options.all_reduce_alg}'; expected one of {', '.join(ALL_REDUCE_ALGORITHMS)}"
        )
    if name == "default":
        result = tf.distribute.get_strategy()
    elif name == "mirrored":
        gpus = num_gpus if num_gpus is not None else options.num_gpus
        result = _mirrored(gpus, options.all_reduce_alg)
    elif name == "multi_worker_mirrored":
        result = _multi_worker(options.all_reduce_alg)
    else:
        result = _tpu(master or options.tpu)
    logging.info(
        "Distribution strategy: %s (%s) with %d replica(s).",
        name,
        type(result).__name__,
        result.num_replicas_in_sync,
    )
    return result


def per_replica_batch_size(
    dataset_options: config_pb2.DatasetOptions, strategy: tf.distribute.Strategy
) -> int:
    """The batch each replica processes per step.

    Args:
        dataset_options: a dataset of the config; its batch_size is the global batch.
        strategy: the run's strategy.

    Returns:
        batch_size // num_replicas_in_sync.

    Raises:
        ValueError: the global batch does not split evenly over the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    config.validate_batch_size(dataset_options, replicas)
    return dataset_options.batch_size // replicas


def _mirrored(num_gpus: int, all_reduce_alg: str) -> tf.distribute.MirroredStrategy:
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus > len(gpus):
        raise ValueError(
            f"{num_gpus} GPUs requested for the mirrored strategy but only {len(gpus)} are "
            "visible; lower --num_gpus / trainer_options.distribution.num_gpus"
        )
    if gpus:
        devices = [device.name for device in gpus[: num_gpus or len(gpus)]]
    else:
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if all_reduce_alg == "nccl":
        cross_device_ops = tf.distribute.NcclAllReduce()
    elif all_reduce_alg == "ring":
        raise ValueError(
            "all_reduce_alg 'ring' is a multi-worker collective; the mirrored strategy "
            "supports 'nccl' or 'auto'"
        )
    else:
        cross_device_ops = None
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)


def _multi_worker(all_reduce_alg: str) -> tf.distribute.MultiWorkerMirroredStrategy:
    tf_config = os.environ.get("TF_CONFIG", "")
    if not tf_config:
        logging.warning(
            "TF_CONFIG is not set: multi_worker_mirrored runs as a single worker. Set "
            'TF_CONFIG to {"cluster": {"worker": [...]}, "task": {"type": "worker", '
            '"index": i}} in every worker process.'
        )
    else:
        try:
            json.loads(tf_config)
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=_COMMUNICATION_IMPLEMENTATIONS[all_reduce_alg]
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(address: str) -> tf.distribute.TPUStrategy:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
