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


def _jitter(probability=1.0, **strengths) -> dataset_pb2.ColorJitterOptions:
    return dataset_pb2.ColorJitterOptions(probability=probability, **strengths)


# The official Video-kMaX strengths (detectron2's ColorAugSSDTransform defaults).
OFFICIAL_JITTER = {
    "brightness_delta": 32.0,
    "min_contrast_factor": 0.5,
    "max_contrast_factor": 1.5,
    "min_saturation_factor": 0.5,
    "max_saturation_factor": 1.5,
    "hue_delta": 0.1,
}


def _frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 235, (count, 6, 7, 3)).astype(np.float32)


@pytest.mark.parametrize("seed", [[0, 1], [4, 2], [9, 9]])
def test_color_jitter_is_one_draw_for_the_whole_clip(seed):
    # The jitter is pixel-wise, so with one draw per clip a frame's output cannot depend on
    # the clip's other frames.
    a, b = _frames(2)
    options = _jitter(0.5, **OFFICIAL_JITTER)

    def jitter(*frames):
        return augmentation.jitter_colors(tf.constant(np.stack(frames)), options, seed).numpy()

    mixed = jitter(a, b)
    np.testing.assert_allclose(mixed[0], jitter(a, a)[0], atol=1e-4)
    np.testing.assert_allclose(mixed[1], jitter(b, b)[0], atol=1e-4)
    assert 0 <= mixed.min() and mixed.max() <= 255


def test_color_jitter_steps_do_what_their_names_say():
    image = tf.constant(_frames(2, seed=1))
    hsv = tf.image.rgb_to_hsv(image / 255).numpy()
    seeds = [[s, 7] for s in range(12)]

    def run(**strengths):
        return [augmentation.jitter_colors(image, _jitter(**strengths), s).numpy() for s in seeds]

    shifts = [out - image.numpy() for out in run(brightness_delta=16)]
    for shift in shifts:  # frames stay within 20..235, so nothing is clipped
        np.testing.assert_allclose(shift, shift.flat[0], atol=1e-3)
    assert all(abs(shift.flat[0]) <= 16 for shift in shifts)
    assert len({round(float(shift.flat[0]), 3) for shift in shifts}) == len(seeds)

    gains = [out / image.numpy() for out in run(min_contrast_factor=0.8, max_contrast_factor=1.05)]
    for gain in gains:
        np.testing.assert_allclose(gain, gain.flat[0], rtol=1e-5)
        assert 0.8 <= gain.flat[0] <= 1.05

    for out in run(min_saturation_factor=0.5, max_saturation_factor=1.5):
        out_hsv = tf.image.rgb_to_hsv(out / 255).numpy()
        np.testing.assert_allclose(out_hsv[..., 2], hsv[..., 2], atol=1e-4)  # value kept
        ratio = (out_hsv[..., 1] / hsv[..., 1])[out_hsv[..., 1] < 0.999]  # unclipped
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-3)

    for out in run(hue_delta=0.1):
        out_hsv = tf.image.rgb_to_hsv(out / 255).numpy()
        np.testing.assert_allclose(out_hsv[..., 1:], hsv[..., 1:], atol=1e-4)  # s, v kept
        turn = (out_hsv[..., 0] - hsv[..., 0] + 0.5) % 1 - 0.5
        np.testing.assert_allclose(turn, turn.flat[0], atol=1e-4)
        assert abs(turn.flat[0]) <= 0.1 + 1e-4


def test_color_jitter_probability_gates_each_step():
    image = tf.constant(_frames(1))
    never = augmentation.jitter_colors(image, _jitter(0.0, **OFFICIAL_JITTER), [1, 2])
    np.testing.assert_array_equal(never, image)
    changed = [
        not np.allclose(
            augmentation.jitter_colors(image, _jitter(0.5, brightness_delta=32), [s, 0]), image
        )
        for s in range(40)
    ]
    assert 10 < sum(changed) < 30


@pytest.mark.parametrize("seed", [[0, 1], [3, 5]])
def test_color_jitter_in_augment_clip_changes_only_the_image(seed):
    image, panoptic = _clip(2, 40, 50, seed=seed[0])
    plain = _augment(image, panoptic, _options(0.5, 2.0, 0.25), seed)
    options = _options(0.5, 2.0, 0.25)
    options.color_jitter.SetInParent()  # present with the default (identity) strengths
    identity = _augment(image, panoptic, options, seed)
    options.color_jitter.CopyFrom(_jitter(1.0, **OFFICIAL_JITTER))
    jittered = _augment(image, panoptic, options, seed)
    for out in (identity, jittered):
        np.testing.assert_array_equal(out[1], plain[1])
    np.testing.assert_array_equal(identity[0], plain[0])
    assert not np.allclose(jittered[0], plain[0])
