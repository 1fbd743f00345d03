"""Tests for deeplab_video.data.augmentation: one transform for all frames of a clip."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.data import augmentation
from deeplab_video.protos import dataset_pb2

VOID = 255 * 1000


def _options(low=1.0, high=1.0, step=0.0, flip=0.5) -> dataset_pb2.AugmentationOptions:
    return dataset_pb2.AugmentationOptions(
        min_scale_factor=low,
        max_scale_factor=high,
        scale_factor_step_size=step,
        flip_probability=flip,
    )


def _clip(num_frames: int, height: int, width: int, seed: int = 0):
    """A clip whose red channel equals the label's instance part (so both can be compared)."""
    rng = np.random.default_rng(seed)
    instance = rng.integers(1, 200, (num_frames, height, width))
    panoptic = (3000 + instance).astype(np.int32)
    image = np.stack([instance, rng.integers(0, 255, instance.shape), instance], -1)
    return tf.constant(image, tf.float32), tf.constant(panoptic)


def _augment(image, panoptic, options, seed, crop=(33, 65)):
    return augmentation.augment_clip(
        image,
        panoptic,
        crop_size=crop,
        options=options,
        label_pad_value=VOID,
        seed=tf.constant(seed, tf.int64),
    )


@pytest.mark.parametrize("seed", [[0, 1], [5, 9], [7, 3]])
def test_identical_frames_stay_identical(seed):
    image, panoptic = _clip(1, 40, 50, seed=seed[0])
    image = tf.repeat(image, 3, axis=0)
    panoptic = tf.repeat(panoptic, 3, axis=0)
    out_image, out_label = _augment(image, panoptic, _options(0.5, 2.0, 0.25), seed)
    assert out_image.shape == (3, 33, 65, 3)
    assert out_label.shape == (3, 33, 65)
    for t in (1, 2):
        np.testing.assert_array_equal(out_image[t], out_image[0])
        np.testing.assert_array_equal(out_label[t], out_label[0])


@pytest.mark.parametrize("seed", [[0, 0], [1, 2], [3, 4], [8, 8]])
def test_labels_move_with_images(seed):
    # No scaling, so crop and flip are exact: the red channel still equals the instance id
    # wherever the label is not padding, and padding is void label + mean pixel.
    image, panoptic = _clip(2, 40, 50, seed=seed[1])
    out_image, out_label = _augment(image, panoptic, _options(flip=0.5), seed)
    out_image, out_label = out_image.numpy(), out_label.numpy()
    padded = out_label == VOID
    assert padded.any() and not padded.all()  # 40x50 frames inside a 33x65 crop
    np.testing.assert_array_equal(out_image[..., 0][~padded], out_label[~padded] - 3000)
    assert np.all(out_image[padded] == augmentation.MEAN_PIXEL)
    # Frame 1 moved exactly like frame 0: find frame 0's window in the source frames.
    source = panoptic.numpy()
    rows = np.flatnonzero(~padded[0].all(axis=1))
    cols = np.flatnonzero(~padded[0].all(axis=0))
    window = out_label[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    matches = [
        (y, x, flip)
        for flip in (False, True)
        for y in range(source.shape[1] - window.shape[1] + 1)
        for x in range(source.shape[2] - window.shape[2] + 1)
        if np.array_equal(
            (source[0, :, ::-1] if flip else source[0])[
                y : y + window.shape[1], x : x + window.shape[2]
            ],
            window[0],
        )
    ]
    assert len(matches) == 1
    y, x, flip = matches[0]
    frame1 = source[1, :, ::-1] if flip else source[1]
    np.testing.assert_array_equal(
        frame1[y : y + window.shape[1], x : x + window.shape[2]], window[1]
    )


def test_same_seed_same_output_and_flip_probability():
    image, panoptic = _clip(2, 33, 65)
    first = _augment(image, panoptic, _options(0.75, 1.25, 0.1), [4, 2])
    second = _augment(image, panoptic, _options(0.75, 1.25, 0.1), [4, 2])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    never = _augment(image, panoptic, _options(flip=0.0), [1, 1])
    always = _augment(image, panoptic, _options(flip=1.0), [1, 1])
    np.testing.assert_array_equal(never[1], panoptic)
    np.testing.assert_array_equal(always[1], panoptic[:, :, ::-1])
    np.testing.assert_array_equal(always[0], image[:, :, ::-1])


def test_scale_factors_come_from_the_grid():
    options = _options(0.75, 1.25, 0.1)
    draws = {
        round(float(augmentation.random_scale_factor(options, tf.constant([i, 0]))), 4)
        for i in range(200)
    }
    assert draws == {0.75, 0.85, 0.95, 1.05, 1.15, 1.25}
    uniform = [
        float(augmentation.random_scale_factor(_options(0.5, 2.0), [i, 1])) for i in range(50)
    ]
    assert 0.5 <= min(uniform) and max(uniform) <= 2.0 and len(set(uniform)) == 50
    assert float(augmentation.random_scale_factor(_options(1.5, 1.5), [0, 0])) == 1.5


def test_pad_clip_pads_bottom_right_with_void():
    image, panoptic = _clip(2, 20, 30)
    out_image, out_label = augmentation.pad_clip(
        image, panoptic, crop_size=(33, 65), label_pad_value=VOID
    )
    assert out_image.shape == (2, 33, 65, 3) and out_label.shape == (2, 33, 65)
    np.testing.assert_array_equal(out_label[:, :20, :30], panoptic)
    np.testing.assert_array_equal(out_image[:, :20, :30], image)
    assert np.all(out_label.numpy()[:, 20:] == VOID) and np.all(
        out_label.numpy()[:, :, 30:] == VOID
    )
    assert np.all(out_image.numpy()[:, 20:] == 127.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must fit in crop_size"):
        augmentation.pad_clip(image, panoptic, crop_size=(17, 65), label_pad_value=VOID)


def test_resize_to_range():
    image, panoptic = _clip(2, 20, 40)
    same = augmentation.resize_to_range(image, panoptic, 0, 0)
    assert same[0] is image
    up, up_label = augmentation.resize_to_range(image, panoptic, 30, 0)
    assert up.shape == (2, 30, 60, 3) and up_label.shape == (2, 30, 60)
    assert set(np.unique(up_label)) <= set(np.unique(panoptic))  # nearest: no new labels
    capped, _ = augmentation.resize_to_range(image, panoptic, 30, 50)
    assert capped.shape == (2, 25, 50, 3)
    shrunk, _ = augmentation.resize_to_range(image, panoptic, 0, 20)
    assert shrunk.shape == (2, 10, 20, 3)
