"""Tests for deeplab_video.model.weight_mapping: rules, transforms and array sources."""

import numpy as np

from deeplab_video.model import weight_mapping


def test_rules_map_each_key_through_the_first_match():
    rules = [
        weight_mapping.Rule(r"backbone/_stem/(.*)", r"encoder/stem/\1"),
        weight_mapping.Rule(r"backbone/(.*)", r"encoder/\1", weight_mapping.squeeze_to),
    ]
    shapes = {"backbone/_stem/kernel": (3,), "backbone/_conv/kernel": (1, 1, 4, 2), "head/b": (2,)}
    assignments = weight_mapping.apply_rules(shapes, rules)
    assert set(assignments) == {"backbone/_stem/kernel", "backbone/_conv/kernel"}
    assert assignments["backbone/_stem/kernel"] == ("encoder/stem/kernel", None)
    conv = assignments["backbone/_conv/kernel"]
    assert conv.source_key == "encoder/_conv/kernel"
    # The transform was made for our shape: a Conv1D kernel [1, 4, 2] becomes [1, 1, 4, 2].
    assert conv.transform(np.zeros([1, 4, 2])).shape == (1, 1, 4, 2)


def test_squeeze_to_only_moves_singleton_axes():
    to_conv = weight_mapping.squeeze_to((1, 1, 4, 2))
    value = np.arange(8.0).reshape(1, 4, 2)
    np.testing.assert_array_equal(to_conv(value)[0, 0], value[0])
    # Other sizes, or the same sizes in another order, are left for the loader to report.
    assert to_conv(np.zeros([1, 2, 4])).shape == (1, 2, 4)
    assert to_conv(np.zeros([4, 3])).shape == (4, 3)
    assert weight_mapping.squeeze_to((128, 256))(np.zeros([1, 128, 256])).shape == (128, 256)


def test_flatten_to_merges_axes_in_order():
    # DeepLab2's batch norm over axes [1, 3] of [batch, heads, length, depth] -> ours [256].
    value = np.arange(256.0).reshape(1, 8, 1, 32)
    flat = weight_mapping.flatten_to((256,))(value)
    np.testing.assert_array_equal(flat, np.arange(256.0))
    assert weight_mapping.flatten_to((255,))(value).shape == (1, 8, 1, 32)


def test_take_last_axis_reorders_channels_then_transforms():
    factory = weight_mapping.take_last_axis([2, 0, 1], weight_mapping.squeeze_to)
    transform = factory((1, 1, 2, 3))
    value = np.array([[[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]])  # [1, 2, 3], Conv1D layout
    np.testing.assert_array_equal(transform(value)[0, 0], [[30, 10, 20], [60, 40, 50]])
    # A source with another number of channels is left as it is.
    assert transform(np.zeros([1, 2, 4])).shape == (1, 2, 4)


def test_array_source():
    source = weight_mapping.ArraySource("model.pth", {"a.weight": np.ones([2, 3], np.float32)})
    assert source.path == "model.pth"
    assert source.shapes == {"a.weight": (2, 3)}
    np.testing.assert_array_equal(source.read("a.weight"), np.ones([2, 3]))
