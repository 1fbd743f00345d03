"""Tests for deeplab_video.post_processing.video_tracker (the whole-video runner)."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import config
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
