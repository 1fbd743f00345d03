"""Tests for deeplab_video.data.copy_paste: clip-consistent panoptic copy-paste."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video.data import copy_paste

DIVISOR = 1000
NUM_CLASSES = 5
THINGS = (3, 4)
VOID = 255 * DIVISOR
DEST_IMAGE = 10.0
DONOR_IMAGE = 200.0


def _clips():
    """A 2-frame 6x8 clip and donor; the donor's objects move between its frames.

    Clip: stuff 0 (label 0), stuff 1 (1000), things 3001 and 3004 (instance ids up to 4).
    Donor: stuff 0 and 2 (0, 2000), things 3001 (the clip's label too) and 4005, a crowd
    (3000), void, and 4009, which appears only in frame 1 (never a candidate).
    """
    clip = np.zeros((2, 6, 8), np.int32)
    clip[:, :, 4:] = 1000
    clip[:, 1:3, 1:3] = 3001
    clip[:, 4:6, 5:7] = 3004
    donor = np.zeros((2, 6, 8), np.int32)
    donor[:, 3:, :] = 2000
    for t in range(2):
        donor[t, 0:2, 2 + t : 4 + t] = 3001
        donor[t, 4:6, t : 2 + t] = 4005
    donor[:, 0, 6:] = 3000
    donor[:, 5, 7] = VOID
    donor[1, 2, 6] = 4009
    image = np.full((2, 6, 8, 3), DEST_IMAGE, np.float32)
    donor_image = DONOR_IMAGE + np.broadcast_to(donor[..., None] % 7, (2, 6, 8, 3))
    return image, clip, donor_image.astype(np.float32), donor


def _paste(seed):
    image, panoptic, donor_image, donor = _clips()
    out_image, out_panoptic = copy_paste.paste_clip(
        tf.constant(image),
        tf.constant(panoptic),
        tf.constant(donor_image),
        tf.constant(donor),
        num_classes=NUM_CLASSES,
        thing_ids=THINGS,
        label_divisor=DIVISOR,
        seed=tf.constant(seed, tf.int64),
    )
    return out_image.numpy(), out_panoptic.numpy()


SEEDS = [[s, 3] for s in range(30)]


@pytest.mark.parametrize("seed", SEEDS)
def test_pasted_segments_are_whole_and_consistent_over_frames(seed):
    image, clip, donor_image, donor = _clips()
    out_image, out_panoptic = _paste(seed)
    pasted = out_image[..., 0] != DEST_IMAGE
    # Pixels that were not pasted are untouched, image and label.
    np.testing.assert_array_equal(out_panoptic[~pasted], clip[~pasted])
    np.testing.assert_array_equal(out_image[~pasted], image[~pasted])
    np.testing.assert_array_equal(out_image[pasted], donor_image[pasted])
    # A donor segment is pasted wherever it is, in every frame, or nowhere.
    labels = set(donor[pasted].tolist())
    np.testing.assert_array_equal(pasted, np.isin(donor, list(labels)))
    # Only segments of the donor's first frame that are neither void nor crowd.
    assert labels <= {0, 2000, 3001, 4005}
    # Covered pixels take the pasted label: stuff keeps it, things get fresh ids above the
    # clip's largest instance id (4), one per donor object, the same in both frames.
    new_ids = {}
    for label in labels:
        values = set(out_panoptic[donor == label].tolist())
        assert len(values) == 1
        (value,) = values
        assert value // DIVISOR == label // DIVISOR
        if label // DIVISOR in THINGS:
            assert value % DIVISOR > 4
            new_ids[label] = value
        else:
            assert value == label
    assert len(set(new_ids.values())) == len(new_ids)
    if {3001, 4005} <= labels:
        assert sorted(v % DIVISOR for v in new_ids.values()) == [5, 6]


def test_subset_size_covers_none_to_all_and_seed_repeats():
    counts = set()
    donor = _clips()[3]
    for seed in SEEDS:
        image, _ = _paste(seed)
        counts.add(len(set(donor[image[..., 0] != DEST_IMAGE].tolist())))
    assert counts == {0, 1, 2, 3, 4}
    for a, b in zip(_paste([5, 5]), _paste([5, 5]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_covered_objects_lose_their_pixels():
    donor = _clips()[3]
    for seed in SEEDS:
        out_image, out_panoptic = _paste(seed)
        pasted = out_image[..., 0] != DEST_IMAGE
        if 2000 in donor[pasted]:  # stuff 2 covers rows 3.. of the clip, incl. all of 3004
            assert 3004 not in out_panoptic
            return
    pytest.fail("no seed pasted the donor's stuff 2")


def test_fresh_ids_must_fit_below_the_label_divisor():
    _, clip, _, _ = _clips()
    divisor = 10  # the clip's labels rescaled: instance 9 leaves no fresh id
    clip = (clip // DIVISOR) * divisor + np.minimum(clip % DIVISOR, 9)
    clip[0, 0, 0] = 3 * divisor + 9
    raised = 0
    for seed in SEEDS:
        image, _, donor_image, donor = _clips()
        donor = (donor // DIVISOR) * divisor + donor % DIVISOR
        try:
            copy_paste.paste_clip(
                tf.constant(image),
                tf.constant(clip),
                tf.constant(donor_image),
                tf.constant(donor),
                num_classes=NUM_CLASSES,
                thing_ids=THINGS,
                label_divisor=divisor,
                seed=tf.constant(seed, tf.int64),
            )
        except tf.errors.InvalidArgumentError as error:
            assert "label_divisor" in error.message
            raised += 1
    assert 0 < raised < len(SEEDS)
