"""Sanity checks of the dataset descriptors in deeplab_video.datasets."""

import numpy as np
import pytest

from deeplab_video import datasets


@pytest.mark.parametrize(
    "descriptor, num_classes, num_things, divisor, is_video",
    [
        (datasets.KITTI_STEP, 19, 2, 1000, True),
        (datasets.VIPSEG, 124, 58, 10000, True),
        (datasets.CITYSCAPES_VPS, 19, 8, 1000, True),
        (datasets.SYNTHETIC, 6, 3, 1000, True),
        (datasets.COCO_PANOPTIC, 133, 80, 10000, False),
        (datasets.CITYSCAPES, 19, 8, 1000, False),
    ],
)
def test_class_counts(descriptor, num_classes, num_things, divisor, is_video):
    assert descriptor.num_classes == num_classes
    assert len(descriptor.thing_ids) == num_things
    assert len(descriptor.stuff_ids) == num_classes - num_things
    assert set(descriptor.thing_ids) | set(descriptor.stuff_ids) == set(range(num_classes))
    assert not set(descriptor.thing_ids) & set(descriptor.stuff_ids)
    assert descriptor.label_divisor == divisor
    assert descriptor.ignore_label == 255 and descriptor.ignore_label >= num_classes
    assert len(set(descriptor.class_names)) == num_classes
    assert descriptor.is_video == is_video


def test_vipseg_has_66_stuff_classes_and_known_things():
    assert len(datasets.VIPSEG.stuff_ids) == 66
    names = datasets.VIPSEG.class_names
    assert {names[i] for i in datasets.VIPSEG.thing_ids} >= {"person", "car", "dog", "train"}
    assert names[0] == "wall" and names[-1] == "train"


def test_kitti_step_tracks_people_and_cars():
    names = datasets.KITTI_STEP.class_names
    assert [names[i] for i in datasets.KITTI_STEP.thing_ids] == ["person", "car"]


def test_coco_panoptic_classes_in_deeplab2_order():
    # DeepLab2's contiguous COCO labels 1..133 are our ids 0..132: things first.
    coco = datasets.COCO_PANOPTIC
    assert coco.thing_ids == tuple(range(80))
    assert coco.class_names[:3] == ("person", "bicycle", "car")
    assert coco.class_names[79:81] == ("toothbrush", "banner")
    assert coco.class_names[-1] == "rug-merged"
    assert coco.colormap[0] == (220, 20, 60)


def test_cityscapes_things_are_the_train_ids_11_to_18():
    names = datasets.CITYSCAPES.class_names
    assert [names[i] for i in datasets.CITYSCAPES.thing_ids][::7] == ["person", "bicycle"]
    assert names == datasets.KITTI_STEP.class_names


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
    assert set(datasets.DATASETS) == {
        "kitti_step",
        "vipseg",
        "cityscapes_vps",
        "synthetic",
        "coco_panoptic",
        "cityscapes",
    }
    for name, descriptor in datasets.DATASETS.items():
        assert datasets.get_descriptor(name) is descriptor and descriptor.name == name
    with pytest.raises(KeyError, match="unknown dataset 'coco'.*kitti_step"):
        datasets.get_descriptor("coco")
