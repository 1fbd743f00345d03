"""One line describing the machine a benchmark ran on (shared by the benchmark scripts)."""

import os
import platform

import tensorflow as tf


def describe_device() -> str:
    """'gpu: <name> xN' when TensorFlow sees a GPU, else 'cpu: <model>, N logical cores'."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"gpu: {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"cpu: {model}, {os.cpu_count()} logical cores"
