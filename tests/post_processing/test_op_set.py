"""Tests for deeplab_video.post_processing.op_set: the builtin-op variants give the same values."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.post_processing import mask_merging, op_set, panoptic_inference
from deeplab_video.protos import evaluator_pb2


def _random_masks(num_pixels: int, num_masks: int, seed: int) -> np.ndarray:
    """bool [num_pixels, num_masks] with few distinct rows, as real masks have."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((7, num_masks)) < 0.3
    return patterns[rng.integers(0, len(patterns), num_pixels)]


def test_the_switch_holds_only_inside_the_block_and_only_in_its_thread():
    seen_elsewhere = []
    assert not op_set.builtin_only()
    with op_set.tflite_builtin_ops():
        assert op_set.builtin_only()
        thread = threading.Thread(target=lambda: seen_elsewhere.append(op_set.builtin_only()))
        thread.start()
        thread.join()
    assert not op_set.builtin_only()
    assert seen_elsewhere == [False]


@pytest.mark.parametrize("dtype", [tf.int32, tf.float32])
def test_histogram_counts_alike_and_drops_values_past_the_last_bin(dtype):
    values = tf.constant(np.random.default_rng(0).integers(0, 12, (3, 50)), tf.int32)
    for num_bins in (12, 9, tf.constant(12)):  # 9: values 9..11 fall outside
        expected = op_set.histogram(values, num_bins, dtype)
        with op_set.tflite_builtin_ops():
            actual = op_set.histogram(values, num_bins, dtype)
        assert actual.dtype == expected.dtype == dtype
        np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(
        op_set.histogram(values, 9), np.bincount(values.numpy().ravel(), minlength=12)[:9]
    )


@pytest.mark.parametrize("num_masks, max_masks", [(0, 16), (5, 16), (30, 40), (48, 48)])
def test_mask_sets_and_areas_of_builtin_ops_equal_the_originals(num_masks, max_masks):
    on = tf.constant(_random_masks(500, num_masks, seed=num_masks))
    expected = mask_merging.mask_sets(on, max_masks)
    with op_set.tflite_builtin_ops():
        actual = mask_merging.mask_sets(on, max_masks)
    np.testing.assert_array_equal(actual.set_of_pixel, expected.set_of_pixel)
    np.testing.assert_array_equal(actual.contains, expected.contains)
    np.testing.assert_array_equal(actual.counts, expected.counts)
    assert (actual.counts.dtype, expected.counts.dtype) == (tf.float32, tf.float64)
    ids = (
        tf.range(num_masks) * 2 % max_masks if num_masks <= max_masks // 2 else tf.range(num_masks)
    )
    probs = tf.random.stateless_uniform([500, num_masks], seed=[1, 2])
    masks = mask_merging.ConfidentMasks(ids=ids, on=on, probs=probs)
    for a, b in zip(
        mask_merging.mask_area_and_confidence(masks, actual, max_masks),
        mask_merging.mask_area_and_confidence(masks, expected, max_masks),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("mode", ["maskwise", "pixelwise", "pixelwise_official"])
# Every query kept, some (fewer than half: the kept-only branch of the original), none.
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.999])
def test_panoptic_inference_of_builtin_ops_equals_the_original(mode, threshold):
    options = evaluator_pb2.PostProcessingOptions(
        mode=mode,
        class_threshold_thing=threshold,
        class_threshold_stuff=threshold,
        mask_threshold=threshold if threshold > 0.9 else 0.3,
        overlap_threshold=0.0,
    )
    mask_logits = tf.random.stateless_normal([1, 9, 13, 20], seed=[3, 4]) * 4.0
    class_logits = tf.random.stateless_normal([20, datasets.SYNTHETIC.num_classes + 1], seed=[5, 6])
    embeddings = tf.random.stateless_normal([20, 8], seed=[7, 8])

    def run() -> tuple[panoptic_inference.ClipPanoptic, set[str]]:
        """The result and the op types of a fresh trace (as the export traces anew)."""
        function = tf.function(
            lambda: panoptic_inference.panoptic_inference(
                mask_logits, class_logits, embeddings, (33, 49), datasets.SYNTHETIC, options
            )
        ).get_concrete_function()
        graph = function.graph.as_graph_def()
        ops = {node.op for node in graph.node}
        ops.update(node.op for f in graph.library.function for node in f.node_def)
        return function(), ops

    expected, original_ops = run()
    with op_set.tflite_builtin_ops():
        actual, ops = run()
    assert "DenseBincount" in original_ops and "DenseBincount" not in ops
    assert not {"UniqueWithCounts", "LeftShift", "BitwiseAnd"} & ops
    assert not {"If", "StatelessIf"} & ops  # XNNPACK fails on IFs of run-time shapes.
    assert (int(expected.num_objects) > 0) == (threshold < 0.5)
    tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)


def _op_types(function) -> set[str]:
    graph = tf.function(function).get_concrete_function().graph.as_graph_def()
    ops = {node.op for node in graph.node}
    ops.update(node.op for f in graph.library.function for node in f.node_def)
    return ops


def test_lookup_equals_gather_natively_and_in_graph_ops():
    rng = np.random.default_rng(0)
    table = tf.constant(rng.integers(-(2**31), 2**31 - 1, 300), tf.int32)
    index = tf.constant(rng.integers(0, 300, (2, 37, 51)), tf.int32)
    expected = tf.gather(table, index)
    assert op_set.native_kernels() is not None
    assert "PyFuncStateless" in _op_types(lambda: op_set.lookup(table, index))
    np.testing.assert_array_equal(op_set.lookup(table, index), expected)
    for switch in (op_set.graph_ops_only, op_set.tflite_builtin_ops):
        with switch():
            assert op_set.native_kernels() is None
            assert "PyFuncStateless" not in _op_types(lambda: op_set.lookup(table, index))
            np.testing.assert_array_equal(op_set.lookup(table, index), expected)


@pytest.mark.parametrize("outside", [-1, 300])
def test_lookup_rejects_an_index_outside_the_table(outside):
    index = tf.constant([[0, 5], [outside, 2]], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the table of"):
        tf.function(lambda: op_set.lookup(tf.range(300), index))()
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the table of"):
        op_set.lookup(tf.range(300), index)  # Eagerly.


@pytest.mark.parametrize("shape, dtype", [((7,), np.int32), ((3, 5), np.float64), (1, np.int8)])
def test_aligned_empty_is_aligned_and_shaped(shape, dtype):
    array = op_set.aligned_empty(shape, dtype)
    assert array.shape == np.empty(shape).shape and array.dtype == dtype
    assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous and array.flags.writeable


@pytest.mark.parametrize("add_index", [False, True])
def test_lookup_modulo_a_divisor_adds_the_index_on_both_paths(add_index):
    rng = np.random.default_rng(1)
    table = tf.constant(rng.integers(-50, 50, 7), tf.int32)
    index = tf.constant(rng.integers(0, 20, (3, 11)) * 1000 + rng.integers(0, 7, (3, 11)), tf.int32)
    expected = tf.gather(table, index % 1000) + (index if add_index else 0)
    np.testing.assert_array_equal(op_set.lookup(table, index, 1000, add_index), expected)
    with op_set.graph_ops_only():
        np.testing.assert_array_equal(op_set.lookup(table, index, 1000, add_index), expected)
