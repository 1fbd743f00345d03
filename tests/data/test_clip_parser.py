"""Tests for deeplab_video.data.clip_parser: the pipeline's map, with and without a donor."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.data import clip_parser, tfrecord
from deeplab_video.protos import dataset_pb2

HEIGHT, WIDTH = 33, 65
CLIP_IMAGE, DONOR_IMAGE = 10, 200


def _records(sequence_id: str, value: int, stuff: int, thing: int) -> tf.Tensor:
    """Two identical frames: one image value; stuff label with a thing box on it."""
    image = np.full((HEIGHT, WIDTH, 3), value, np.uint8)
    panoptic = np.full((HEIGHT, WIDTH), stuff, np.int32)
    panoptic[5:20, 10:40] = thing
    return tf.constant(
        [tfrecord.encode_frame(image, panoptic, sequence_id, index) for index in (3, 4)]
    )


CLIP = _records("clip", CLIP_IMAGE, stuff=0, thing=3001)
DONOR = _records("donor", DONOR_IMAGE, stuff=2000, thing=4001)


def _options(probability: float, ratio: float = 0.5) -> dataset_pb2.DatasetOptions:
    options = dataset_pb2.DatasetOptions(
        dataset="synthetic", crop_size=[HEIGHT, WIDTH], clip_length=2, max_tubes_per_clip=8
    )
    options.augmentations.copy_paste_probability = probability
    options.augmentations.copy_paste_scale_ratio = ratio
    return options


def _parse(options, seed, donor=None):
    parse = clip_parser.make_clip_parser(options, is_training=True)
    seed = tf.constant(seed, tf.int64)
    element = parse(CLIP, seed) if donor is None else parse(CLIP, seed, donor)
    return {key: value.numpy() for key, value in element.items()}


@pytest.mark.parametrize("seed", [[s, 2] for s in range(8)])
def test_copy_paste_changes_only_the_pasted_pixels(seed):
    plain = _parse(_options(1.0), seed)
    pasted = _parse(_options(1.0), seed, DONOR)
    inside = pasted[common.IMAGE][..., 0] == DONOR_IMAGE
    for key in (common.SEQUENCE_ID, common.FRAME_INDEX, common.ORIGINAL_SIZE):
        np.testing.assert_array_equal(pasted[key], plain[key], err_msg=key)
    for key in (common.IMAGE, common.PANOPTIC, common.SEMANTIC):
        np.testing.assert_array_equal(pasted[key][~inside], plain[key][~inside], err_msg=key)
    # The donor is scaled by 0.5, so it covers at most a quarter of the crop.
    assert inside[0].sum() <= (HEIGHT // 2 + 1) * (WIDTH // 2 + 1)
    largest = plain[common.PANOPTIC] % 1000
    assert set(np.unique(pasted[common.PANOPTIC][inside])) <= {2000, 4000 + largest.max() + 1}
    # Targets follow the final labels: every strided pixel in one tube or void, and one
    # tube per label.
    masks = pasted[common.TUBE_MASKS]
    coverage = masks.sum(-1) + pasted[common.VOID_MASK]
    np.testing.assert_array_equal(coverage, np.ones_like(coverage))
    strided = pasted[common.PANOPTIC][:, ::4, ::4]
    tubes = int(pasted[common.TUBE_VALID].sum())
    assert tubes == len(set(np.unique(strided)) - {255000})


def test_copy_paste_scale_ratio_sets_the_donor_size():
    areas = {
        ratio: max(
            (_parse(_options(1.0, ratio), [s, 1], DONOR)[common.IMAGE] == DONOR_IMAGE).sum()
            for s in range(8)
        )
        for ratio in (0.5, 1.0)
    }
    assert 0 < areas[0.5] < areas[1.0]


def test_probability_zero_leaves_the_clip_unchanged():
    for seed in ([0, 1], [7, 7]):
        plain = _parse(_options(0.0), seed)
        with_donor = _parse(_options(0.0), seed, DONOR)
        for key, value in plain.items():
            np.testing.assert_array_equal(with_donor[key], value, err_msg=key)
