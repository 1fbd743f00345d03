"""Tests for deeplab_video.post_processing.video_tracker (the whole-video runner)."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import config
from deeplab_video.data import augmentation
from deeplab_video.model import builder
from deeplab_video.post_processing import video_tracker
from tests import conftest

NEAR_ONLINE = conftest.CONFIG_DIR / "synthetic" / "tiny_near_online.textproto"
NUM_CLASSES = 6  # synthetic: sky, grass, road (stuff); disc, box, triangle (things)
DIVISOR = 1000


def colour_model(clip: tf.Tensor, training: bool = False) -> dict:
    """Test double of the network: query 0 = red pixels (a disc), query 1 = green pixels
    (a box), query 2 = everything else (sky). Outputs at stride 4 as the real model."""
    del training
    pixels = clip[:, :, ::4, ::4, :]
    red = tf.cast((pixels[..., 0] > 200) & (pixels[..., 1] < 100), tf.float32)
    green = tf.cast((pixels[..., 1] > 200) & (pixels[..., 0] < 100), tf.float32)
    background = 1.0 - tf.maximum(red, green)
    mask_logits = 20.0 * tf.stack([red, green, background], axis=-1) - 10.0
    class_logits = tf.one_hot([[3, 4, 0]], NUM_CLASSES + 1) * 20.0
    embeddings = tf.constant([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    return {
        "mask_logits": mask_logits,
        "class_logits": class_logits,
        "query_embeddings": embeddings,
    }


def _video(num_frames: int, height: int = 40, width: int = 70) -> np.ndarray:
    """A red and a green square moving in opposite directions over a grey background."""
    frames = np.full((num_frames, height, width, 3), 90, np.uint8)
    for t in range(num_frames):
        frames[t, 4:16, 4 + 5 * t : 16 + 5 * t] = (255, 0, 0)
        frames[t, 22:34, 50 - 5 * t : 62 - 5 * t] = (0, 255, 0)
    return frames


def _options(clip_length: int):
    options = config.load_config(NEAR_ONLINE)
    options.eval_dataset_options.clip_length = clip_length
    options.evaluator_options.post_processing.mask_threshold = 0.5
    return options


def test_padded_size_is_the_next_32k_plus_1():
    assert video_tracker.padded_size(375, 1242) == (385, 1249)
    assert video_tracker.padded_size(97, 129) == (97, 129)
    assert video_tracker.padded_size(40, 70) == (65, 97)


@pytest.mark.parametrize(
    "height, width, min_size, max_size",
    [(720, 1280, 897, 1601), (375, 1242, 0, 0), (40, 70, 60, 0), (300, 500, 0, 200)],
)
def test_resized_size_is_the_pipelines_resize_to_range(height, width, min_size, max_size):
    image = tf.zeros([1, height, width, 3])
    expected, _ = augmentation.resize_to_range(
        image, tf.zeros([1, height, width], tf.int32), min_size, max_size
    )
    expected = tuple(expected.shape[1:3])
    assert video_tracker.resized_size(height, width, min_size, max_size) == expected
    in_graph = video_tracker.resized_size(
        tf.constant(height), tf.constant(width), min_size, max_size
    )
    assert tuple(int(side) for side in in_graph) == expected


def test_official_vipseg_test_size():
    # 720p frames scaled so the shorter side is 897 (the official MIN_SIZE_TEST).
    assert video_tracker.resized_size(720, 1280, 897, 1601) == (897, 1594)


def test_frames_resized_for_the_network_come_back_at_their_size():
    frames = _video(3)
    options = _options(2)
    plain = list(video_tracker.VideoRunner(colour_model, options).stream(iter(frames)))
    options.eval_dataset_options.min_resize_value = 80
    options.eval_dataset_options.max_resize_value = 200
    resized = list(video_tracker.VideoRunner(colour_model, options).stream(iter(frames)))
    assert [p.panoptic.shape for p in resized] == [(40, 70)] * 3
    # The squares are found at twice the resolution and brought back: the same classes
    # but for the squares' borders (where the plain run leaves void pixels).
    for t, (a, b) in enumerate(zip(plain, resized, strict=True)):
        assert np.mean(a.panoptic // DIVISOR == b.panoptic // DIVISOR) > 0.9
        assert b.panoptic[9, 9 + 5 * t] // DIVISOR == 3
        assert b.panoptic[27, 55 - 5 * t] // DIVISOR == 4


@pytest.mark.parametrize("clip_length, num_frames", [(1, 4), (2, 5), (2, 1), (3, 6)])
def test_every_frame_once_with_consistent_ids(clip_length, num_frames):
    frames = _video(num_frames)
    runner = video_tracker.VideoRunner(colour_model, _options(clip_length))
    predictions = list(runner.stream(iter(frames)))
    assert [p.frame_index for p in predictions] == list(range(num_frames))
    panoptic = np.stack([p.panoptic for p in predictions])
    assert panoptic.shape == (num_frames, 40, 70) and panoptic.dtype == np.int32
    red_ids = {int(panoptic[t, 9, 9 + 5 * t]) for t in range(num_frames)}
    green_ids = {int(panoptic[t, 27, 55 - 5 * t]) for t in range(num_frames)}
    assert len(red_ids) == 1 and len(green_ids) == 1
    (red,), (green,) = red_ids, green_ids
    assert red // DIVISOR == 3 and green // DIVISOR == 4
    assert red % DIVISOR != green % DIVISOR and min(red, green) % DIVISOR > 0
    assert panoptic[0, 38, 2] == 0  # background: stuff class 0, instance 0
    clips = -(-max(num_frames - 1, 1) // max(clip_length - 1, 1)) if clip_length > 1 else num_frames
    assert len(runner.matching_space_sizes) == clips
    np.testing.assert_array_equal(runner.run_sequence(frames), panoptic)


def test_runs_the_real_tiny_model():
    options = _options(2)
    model = builder.build_model(options, inference_only=True)
    runner = video_tracker.VideoRunner(model, options)
    panoptic = runner.run_sequence(_video(3, 33, 50))
    assert panoptic.shape == (3, 33, 50)
    semantic = panoptic // DIVISOR
    assert np.all((semantic < NUM_CLASSES) | (semantic == 255))


def position_model(clip: tf.Tensor, training: bool = False) -> dict:
    """colour_model whose background says where the frame sits in its clip: sky (class 0)
    on the clip's first frame, grass (class 1) on the others. It also outputs
    'mask_embeddings' of another width than its 'query_embeddings'."""
    outputs = colour_model(clip, training)
    red, green, background = tf.unstack(outputs["mask_logits"], axis=-1)
    first = tf.reshape(tf.range(tf.shape(clip)[1]) == 0, [1, -1, 1, 1])
    masks = [red, green, tf.where(first, background, -10.0), tf.where(first, -10.0, background)]
    return {
        "mask_logits": tf.stack(masks, axis=-1),
        "class_logits": tf.one_hot([[3, 4, 0, 1]], NUM_CLASSES + 1) * 20.0,
        "query_embeddings": tf.eye(4, 3)[tf.newaxis],
        "mask_embeddings": 2.0 * tf.eye(4, 5)[tf.newaxis],
    }


@pytest.mark.parametrize(
    "rule, clip_length, positions",
    [
        ("aligned_clips", 1, [0, 0, 0, 0, 0]),  # T = 1: both rules report every clip
        ("first_clip", 2, [0, 1, 1, 1, 1]),
        # The official loop: clips start every frame, those at even frames report both.
        ("aligned_clips", 2, [0, 1, 0, 1, 0]),
        ("first_clip", 3, [0, 1, 2, 1, 2]),
    ],
)
def test_output_frames_choose_the_clip_of_every_frame(rule, clip_length, positions):
    options = _options(clip_length)
    options.evaluator_options.stitching.output_frames = rule
    runner = video_tracker.VideoRunner(position_model, options)
    predictions = list(runner.stream(iter(_video(5))))
    assert [p.frame_index for p in predictions] == list(range(5))
    backgrounds = [int(p.panoptic[38, 2]) // DIVISOR for p in predictions]
    assert backgrounds == [min(position, 1) for position in positions]


def test_output_frames_by_hand():
    def mask(index, length, stride, rule):
        return video_tracker.output_frames(index, length, stride, rule).numpy().tolist()

    assert [mask(i, 2, 1, "first_clip") for i in range(3)] == [
        [True, True],
        [False, True],
        [False, True],
    ]
    assert mask(1, 3, 2, "first_clip") == [False, True, True]
    assert [mask(i, 2, 1, "aligned_clips") for i in range(3)] == [
        [True, True],
        [False, False],
        [True, True],
    ]
    assert mask(tf.constant(3), 1, 1, "aligned_clips") == [True]
    assert mask(tf.constant(3), 1, 1, "first_clip") == [True]


def test_output_frame_rules_are_checked():
    options = _options(3)
    options.evaluator_options.stitching.output_frames = "aligned_clips"
    with pytest.raises(ValueError, match="skip frames"):
        video_tracker.VideoRunner(position_model, options)
    options.evaluator_options.stitching.output_frames = "last_clip"
    with pytest.raises(ValueError, match="output_frames"):
        video_tracker.VideoRunner(position_model, options)


@pytest.mark.parametrize("output, width", [("query_embeddings", 3), ("mask_embeddings", 5)])
def test_embedding_output_chooses_the_objects_embeddings(output, width):
    options = _options(2)
    options.evaluator_options.memory_buffer.embedding_output = output
    segmenter = video_tracker.ClipSegmenter(position_model, options)
    clip = segmenter.segment(tf.constant(_video(2)))
    rows = int(clip.num_objects)
    assert rows == 2 and clip.embeddings.shape[-1] == width
    expected = position_model(tf.zeros([1, 2, 1, 1, 3]))[output][0].numpy()
    np.testing.assert_array_equal(
        clip.embeddings[:rows], expected[clip.query_indices[:rows].numpy()]
    )


def test_missing_embedding_output_names_the_option():
    options = _options(2)
    options.evaluator_options.memory_buffer.embedding_output = "mask_embeddings"
    segmenter = video_tracker.ClipSegmenter(colour_model, options)
    with pytest.raises(KeyError, match="embedding_output"):
        segmenter.segment(tf.constant(_video(2)))
