"""Sanity checks of the dataset descriptors in deeplab_video.data.datasets."""

import numpy as np
import pytest

from deeplab_video.data import datasets


@pytest.mark.parametrize(
    "descriptor, num_classes, num_things, divisor",
    [
        (datasets.KITTI_STEP, 19, 2, 1000),
        (datasets.VIPSEG, 124, 58, 10000),
        (datasets.CITYSCAPES_VPS, 19, 8, 1000),
        (datasets.SYNTHETIC, 6, 3, 1000),
    ],
)
def test_class_counts(descriptor, num_classes, num_things, divisor):
    assert descriptor.num_classes == num_classes
    assert len(descriptor.thing_ids) == num_things
    assert len(descriptor.stuff_ids) == num_classes - num_things
    assert set(descriptor.thing_ids) | set(descriptor.stuff_ids) == set(range(num_classes))
    assert not set(descriptor.thing_ids) & set(descriptor.stuff_ids)
    assert descriptor.label_divisor == divisor
    assert descriptor.ignore_label == 255 and descriptor.ignore_label >= num_classes
    assert len(set(descriptor.class_names)) == num_classes
    assert descriptor.is_video


def test_vipseg_has_66_stuff_classes_and_known_things():
    assert len(datasets.VIPSEG.stuff_ids) == 66
    names = datasets.VIPSEG.class_names
    assert {names[i] for i in datasets.VIPSEG.thing_ids} >= {"person", "car", "dog", "train"}
    assert names[0] == "wall" and names[-1] == "train"


def test_kitti_step_tracks_people_and_cars():
    names = datasets.KITTI_STEP.class_names
    assert [names[i] for i in datasets.KITTI_STEP.thing_ids] == ["person", "car"]


def test_synthetic_classes():
    names = datasets.SYNTHETIC.class_names
    assert names == ("sky", "grass", "road", "disc", "box", "triangle")
    assert datasets.SYNTHETIC.thing_ids == (3, 4, 5)


@pytest.mark.parametrize(
    "descriptor", list(datasets.DATASETS.values()), ids=list(datasets.DATASETS)
)
def test_colormaps(descriptor):
    assert len(descriptor.colormap) == descriptor.num_classes
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in descriptor.colormap)
    table = descriptor.colormap_array()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    np.testing.assert_array_equal(table[: descriptor.num_classes], descriptor.colormap)
    assert not table[descriptor.num_classes :].any()  # void and unused ids are black


def test_registry_lookup():
    assert set(datasets.DATASETS) == {"kitti_step", "vipseg", "cityscapes_vps", "synthetic"}
    for name, descriptor in datasets.DATASETS.items():
        assert datasets.get_descriptor(name) is descriptor and descriptor.name == name
    with pytest.raises(KeyError, match="unknown dataset 'coco'.*kitti_step"):
        datasets.get_descriptor("coco")
