"""Times the batched TF Hungarian solver against scipy's linear_sum_assignment.

Prints one JSON record per case: solver (scipy, or tf in eager, tf_function or xla mode),
device, cost shape, warm-up calls, timed iterations, median and p90 seconds per batch and per
sample. Results are copied to the host (`.numpy()`) before the clock stops.

  python benchmarks/matching.py --shapes=8x128x128,8x128x40 --iterations=20
"""

import json
import time

import numpy as np
import scipy.optimize
import tensorflow as tf
from absl import app, flags

from deeplab_video.loss import matching

_SHAPES = flags.DEFINE_list(
    "shapes", ["8x128x128", "8x128x40"], "Cost shapes batch x rows x cols to time."
)
_MODES = flags.DEFINE_list(
    "modes", ["scipy", "eager", "tf_function", "xla"], "Solvers: scipy, eager, tf_function, xla."
)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed calls before timing (tracing, compiling).")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "Timed calls per case.")
_EAGER_ITERATIONS = flags.DEFINE_integer(
    "eager_iterations", 2, "Timed calls for the (slow) eager mode."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random uniform costs.")


def _parse_shape(text: str) -> tuple[int, int, int]:
    parts = [int(part) for part in text.lower().split("x")]
    if len(parts) != 3:
        raise app.UsageError(f"--shapes entries are batch x rows x cols, got {text!r}.")
    return parts[0], parts[1], parts[2]


def _scipy_solver(cost: np.ndarray):
    def solve():
        return [scipy.optimize.linear_sum_assignment(matrix) for matrix in cost]

    return solve


def _tf_solver(cost: np.ndarray, mode: str):
    tensor = tf.constant(cost)
    if mode == "eager":
        solve = matching.linear_sum_assignment
    elif mode == "tf_function":
        solve = tf.function(matching.linear_sum_assignment)
    elif mode == "xla":
        solve = tf.function(matching.linear_sum_assignment, jit_compile=True)
    else:
        raise app.UsageError(f"Unknown mode {mode!r}; use scipy, eager, tf_function or xla.")

    def run():
        row_to_col, _ = solve(tensor)
        return row_to_col.numpy()

    return run


def _time(run, warmup: int, iterations: int) -> list[float]:
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    gpus = tf.config.list_physical_devices("GPU")
    device = "CPU"
    if gpus:
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    rng = np.random.default_rng(_SEED.value)
    for text in _SHAPES.value:
        shape = _parse_shape(text)
        cost = rng.uniform(size=shape).astype(np.float32)
        for mode in _MODES.value:
            if mode == "scipy":
                run, record_device = _scipy_solver(cost), "CPU (host)"
            else:
                run, record_device = _tf_solver(cost, mode), device
            iterations = _EAGER_ITERATIONS.value if mode == "eager" else _ITERATIONS.value
            warmup = min(_WARMUP.value, 1) if mode == "eager" else _WARMUP.value
            seconds = _time(run, warmup, iterations)
            median = float(np.median(seconds))
            record = {
                "benchmark": "linear_sum_assignment",
                "solver": "scipy" if mode == "scipy" else f"tf_{mode}",
                "device": record_device,
                "shape": list(shape),
                "warmup": warmup,
                "iterations": iterations,
                "median_s": round(median, 6),
                "p90_s": round(float(np.percentile(seconds, 90)), 6),
                "median_per_sample_s": round(median / shape[0], 6),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
