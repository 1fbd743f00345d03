"""Tests for deeplab_video.export.tflite_ops: every stand-in gives its original's values."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.export import tflite_ops
from deeplab_video.post_processing import mask_merging, panoptic_inference
from deeplab_video.protos import evaluator_pb2

_ORIGINAL_BINCOUNT = tf.math.bincount


def _random_masks(num_pixels: int, num_masks: int, seed: int) -> np.ndarray:
    """bool [num_pixels, num_masks] with few distinct rows, as real masks have."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((7, num_masks)) < 0.3
    return patterns[rng.integers(0, len(patterns), num_pixels)]


def test_histogram_counts_as_bincount_and_drops_values_past_the_last_bin():
    values = tf.constant(np.random.default_rng(0).integers(0, 12, (3, 50)), tf.int32)
    for size in (12, 9):  # 9: values 9..11 fall outside, as bincount's maxlength drops them
        np.testing.assert_array_equal(
            tflite_ops.histogram(values, minlength=size, maxlength=size),
            _ORIGINAL_BINCOUNT(values, minlength=size, maxlength=size, dtype=tf.int32),
        )
    size = tf.constant(12)
    np.testing.assert_array_equal(
        tflite_ops.histogram(values, minlength=size, maxlength=size, dtype=tf.float32),
        _ORIGINAL_BINCOUNT(values, minlength=12, maxlength=12, dtype=tf.float32),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minlength": 4},
        {"minlength": 4, "maxlength": 5},
        {"minlength": 4, "maxlength": 4, "weights": tf.ones([3])},
        {"minlength": 4, "maxlength": 4, "axis": -1},
    ],
)
def test_histogram_rejects_other_bincount_calls(kwargs):
    with pytest.raises(ValueError, match="minlength=n"):
        tflite_ops.histogram(tf.constant([0, 1, 2]), **kwargs)


@pytest.mark.parametrize("num_masks, max_masks", [(0, 16), (5, 16), (30, 40), (48, 48)])
def test_mask_sets_and_areas_equal_mask_merging(num_masks, max_masks):
    on = tf.constant(_random_masks(500, num_masks, seed=num_masks))
    expected = mask_merging.mask_sets(on, max_masks)
    actual = tflite_ops.mask_sets(on, max_masks)
    np.testing.assert_array_equal(actual.set_of_pixel, expected.set_of_pixel)
    np.testing.assert_array_equal(actual.contains, expected.contains)
    np.testing.assert_array_equal(actual.counts, expected.counts)
    assert actual.counts.dtype == tf.float32
    ids = (
        tf.range(num_masks) * 2 % max_masks if num_masks <= max_masks // 2 else tf.range(num_masks)
    )
    probs = tf.random.stateless_uniform([500, num_masks], seed=[1, 2])
    masks = mask_merging.ConfidentMasks(ids=ids, on=on, probs=probs)
    for a, b in zip(
        tflite_ops.mask_area_and_confidence(masks, actual, max_masks),
        mask_merging.mask_area_and_confidence(masks, expected, max_masks),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("mode", ["maskwise", "pixelwise", "pixelwise_official"])
def test_panoptic_inference_with_the_stand_ins_equals_without(mode):
    options = evaluator_pb2.PostProcessingOptions(
        mode=mode, class_threshold_thing=0.0, class_threshold_stuff=0.0, overlap_threshold=0.0
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
    with tflite_ops.builtin_substitutes():
        actual, ops = run()
    assert tf.math.bincount is _ORIGINAL_BINCOUNT  # restored after the block
    assert "DenseBincount" in original_ops and "DenseBincount" not in ops
    assert not {"UniqueWithCounts", "LeftShift", "BitwiseAnd"} & ops
    assert int(expected.num_objects) > 0
    tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)
