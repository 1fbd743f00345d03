"""Tests for deeplab_video.post_processing.native_merge: the fused pixel pass equals the ops."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.post_processing import native_merge, op_set, panoptic_inference
from deeplab_video.protos import evaluator_pb2

# The ops tf.numpy_function may add to a graph.
PY_FUNCS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
# The pixel pass is the numpy_function with PixelPass's six outputs (op_set.lookup has one).
PIXEL_PASS = "pixel pass"
CANVAS = (41, 57)  # stride 4 of 11 x 15 logits, aligned corners
IMAGE = (37, 50)  # the image in the canvas' top-left corner; the rest is padding


def _logits(num_frames: int, num_queries: int, scale: float, seed: int) -> np.ndarray:
    """float32 [T, 11, 15, N] smooth random logits (neighbours correlated, as a model's)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_frames, 4, 5, num_queries)).astype(np.float32)
    smooth = tf.raw_ops.ResizeBilinear(images=coarse, size=[11, 15], align_corners=True)
    return (smooth.numpy() + 0.3 * rng.normal(size=smooth.shape)).astype(np.float32) * scale


def _tensorflow_masks(logits: np.ndarray, kept: np.ndarray, threshold: float):
    """The ops' resized logits [P, N], probabilities and binary masks of the kept queries."""
    resized = tf.raw_ops.ResizeBilinear(images=logits, size=CANVAS, align_corners=True)
    flat = tf.reshape(resized[:, : IMAGE[0], : IMAGE[1]], [-1, logits.shape[-1]])
    probs = tf.exp(flat - tf.reduce_logsumexp(flat, axis=1, keepdims=True))
    return flat.numpy(), probs.numpy(), (probs.numpy() > threshold) & kept


def _fold(on: np.ndarray) -> np.ndarray:
    """int64 [P]: the set code of each row of bool [P, N] (module docstring)."""
    codes = np.zeros(len(on), np.int64)
    for query in range(on.shape[1]):
        codes = np.where(on[:, query], codes * (on.shape[1] + 1) + query + 1, codes)
    return codes


def test_the_kernel_is_built():
    # `pip install` builds it (setup.py); without it the runner is ~3x slower at 720p.
    assert op_set._native_kernels is not None


@pytest.mark.parametrize("threshold", [0.4, 0.5, 0.3])
@pytest.mark.parametrize("scale", [1.0, 8.0, 300.0])
def test_the_pixel_pass_decides_every_pixel_as_the_tensorflow_ops(threshold, scale):
    logits = _logits(2, 12, scale, seed=int(scale))
    kept = np.arange(12) % 5 != 2
    result = native_merge.pixel_pass(
        tf.constant(logits), tf.constant(kept), CANVAS, IMAGE, threshold
    )
    flat, probs, on = _tensorflow_masks(logits, kept, threshold)
    assert int(result.status) == len(result.undecided_pixels) >= 0
    decided = result.codes.numpy() >= 0
    np.testing.assert_array_equal(np.flatnonzero(~decided), result.undecided_pixels)
    # The undecided pixels' logits are the resize's, bit for bit.
    np.testing.assert_array_equal(
        result.undecided_logits.numpy().view(np.int32), flat[~decided].view(np.int32)
    )
    codes = _fold(on)
    np.testing.assert_array_equal(result.codes.numpy()[decided], codes[decided])
    counts = np.bincount(codes[decided], minlength=result.counts.shape[0])
    np.testing.assert_array_equal(result.counts, counts)
    sums = np.where(on & decided[:, None], probs, 0.0).sum(axis=0, dtype=np.float64)
    np.testing.assert_allclose(result.prob_sums, sums, rtol=1e-5, atol=1e-5)


def test_pixels_within_rounding_of_the_threshold_are_left_undecided():
    # Two queries; on the left columns query 0's probability is 0.4 up to a few units in
    # the last place, on both sides of it (a ramp over the rows).
    logits = np.zeros((1, 11, 15, 2), np.float32)
    logits[..., 0] = np.log(0.4 / 0.6) + np.linspace(-1e-6, 1e-6, 11)[:, np.newaxis]
    logits[:, :, 5:, 0] = 2.0
    kept = np.array([True, True])
    result = native_merge.pixel_pass(tf.constant(logits), tf.constant(kept), CANVAS, IMAGE, 0.4)
    _, probs, on = _tensorflow_masks(logits, kept, 0.4)
    near = np.abs(probs[:, 0] / 0.4 - 1.0) < 1e-6
    assert 0 < near.sum() < len(near) // 2
    assert set(np.flatnonzero(near)) <= set(result.undecided_pixels.numpy())
    assert len(result.undecided_pixels) < len(near) // 2
    # Decided by the ops on those rows alone, they come out as on the whole clip.
    undecided = native_merge.decide_undecided(result, tf.constant(kept), 0.4)
    assert undecided.valid
    rows = result.undecided_pixels.numpy()
    bits = undecided.probs.numpy().view(np.int32)
    np.testing.assert_array_equal(bits, probs[rows].view(np.int32))
    np.testing.assert_array_equal(undecided.on, on[rows])
    assert 0 < on[rows, 0].sum() < len(rows)  # Both sides of the threshold occur.


@pytest.mark.parametrize("problem, status", [("not finite", -1), ("too many undecided", -2)])
def test_the_kernel_reports_what_it_cannot_do(problem, status, monkeypatch):
    logits = _logits(1, 6, 1.0, seed=3)
    if problem == "not finite":
        logits[0, 4, 4, 2] = np.nan
    else:
        monkeypatch.setattr(native_merge, "UNDECIDED_CAPACITY", 0)
        # Two tied queries and no others: probability 0.5, the threshold, everywhere.
        logits[..., 1] = logits[..., 0]
        logits[..., 2:] = -30.0
    result = native_merge.pixel_pass(
        tf.constant(logits), tf.constant([True] * 6), CANVAS, IMAGE, 0.5
    )
    assert int(result.status) == status
    undecided = native_merge.decide_undecided(result, tf.constant([True] * 6), 0.5)
    assert not undecided.valid


def test_max_masks_per_pixel_and_usability():
    assert [native_merge.max_masks_per_pixel(t) for t in (0.5, 0.4, 0.3, 1 / 3, 0.0)] == [
        2,
        2,
        3,
        3,
        0,
    ]
    assert native_merge.usable(128, 0.4)
    assert not native_merge.usable(128, 0.0)  # Any number of masks per pixel.
    assert not native_merge.usable(128, 0.2)  # 129 ** 5 codes.
    with op_set.graph_ops_only():
        assert not native_merge.usable(16, 0.4)
    with op_set.tflite_builtin_ops():
        assert not native_merge.usable(16, 0.4)


def _run_panoptic(mask_logits, class_logits, options, graph_ops_only: bool):
    """panoptic_inference traced afresh, and the op types of its graph."""

    def body():
        return panoptic_inference.panoptic_inference(
            mask_logits,
            class_logits,
            tf.random.stateless_normal([class_logits.shape[0], 8], seed=[7, 8]),
            IMAGE,
            datasets.SYNTHETIC,
            options,
            canvas_size=CANVAS,
            image_size=IMAGE,
        )

    def traced():
        if graph_ops_only:
            with op_set.graph_ops_only():
                return body()
        return body()

    function = tf.function(traced).get_concrete_function()
    graph = function.graph.as_graph_def()
    nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
    ops = {node.op for node in nodes}
    if any(node.op in PY_FUNCS and len(node.attr["Tout"].list.type) == 6 for node in nodes):
        ops.add(PIXEL_PASS)
    return function(), ops


@pytest.mark.parametrize("num_frames", [1, 2])
@pytest.mark.parametrize("scale, threshold", [(4.0, 0.4), (40.0, 0.5), (6.0, 0.3), (4.0, 0.1)])
def test_panoptic_inference_with_the_kernel_equals_the_tensorflow_ops(num_frames, scale, threshold):
    options = evaluator_pb2.PostProcessingOptions(
        mode="maskwise",
        class_threshold_thing=0.2,
        class_threshold_stuff=0.2,
        mask_threshold=threshold,
        overlap_threshold=0.5,
        thing_area_limit=20,
        stuff_area_limit=40,
    )
    mask_logits = tf.constant(_logits(num_frames, 20, scale, seed=num_frames))
    class_logits = tf.random.stateless_normal([20, datasets.SYNTHETIC.num_classes + 1], seed=[5, 6])
    class_logits *= 4.0
    actual, ops = _run_panoptic(mask_logits, class_logits, options, graph_ops_only=False)
    expected, graph_ops = _run_panoptic(mask_logits, class_logits, options, graph_ops_only=True)
    assert not PY_FUNCS & graph_ops
    assert (PIXEL_PASS in ops) == (threshold > 0.2)  # 0.1: 21 ** 10 set codes.
    assert int(expected.num_objects) > 1
    tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)


def test_panoptic_inference_falls_back_to_the_tensorflow_ops(monkeypatch):
    monkeypatch.setattr(native_merge, "UNDECIDED_CAPACITY", 0)
    options = evaluator_pb2.PostProcessingOptions(
        mode="maskwise", class_threshold_thing=0.2, class_threshold_stuff=0.2, mask_threshold=0.5
    )
    mask_logits = np.repeat(_logits(1, 10, 4.0, seed=9)[..., :5], 2, axis=-1)  # Tied pairs.
    class_logits = tf.random.stateless_normal([10, datasets.SYNTHETIC.num_classes + 1], seed=[1, 2])
    actual, ops = _run_panoptic(tf.constant(mask_logits), class_logits * 4.0, options, False)
    expected, _ = _run_panoptic(tf.constant(mask_logits), class_logits * 4.0, options, True)
    assert PIXEL_PASS in ops
    tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)
