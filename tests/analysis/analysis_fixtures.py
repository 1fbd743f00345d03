"""Test doubles and tiny datasets for the analysis tools (matching space, query centres)."""

import pathlib

import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from deeplab_video import config, datasets
from deeplab_video.data import synthetic
from tests import conftest

NEAR_ONLINE = conftest.CONFIG_DIR / "synthetic" / "tiny_near_online.textproto"
DESCRIPTOR = datasets.SYNTHETIC
NUM_CLASSES = DESCRIPTOR.num_classes
SKY, GRASS = DESCRIPTOR.class_names.index("sky"), DESCRIPTOR.class_names.index("grass")
DISC, BOX = DESCRIPTOR.class_names.index("disc"), DESCRIPTOR.class_names.index("box")


def options(clip_length: int = 2, file_pattern: str | None = None):
    """The tiny near-online experiment with the given clip length (and eval file pattern).

    The mask threshold is 0.5 so that the doubles' masks (two queries at probability 1/2
    on their borders) never overlap, and the merge keeps every segment.
    """
    opts = config.load_config(NEAR_ONLINE)
    opts.eval_dataset_options.clip_length = clip_length
    opts.evaluator_options.post_processing.mask_threshold = 0.5
    if file_pattern is not None:
        del opts.eval_dataset_options.file_pattern[:]
        opts.eval_dataset_options.file_pattern.append(file_pattern)
    return opts


def write_dataset(directory: pathlib.Path, videos: list[np.ndarray], clip_length: int = 2):
    """Writes uint8 [F, H, W, 3] videos as a val split and a config that reads them.

    Returns:
      The config file path.
    """
    sequences = [
        synthetic.SyntheticSequence(f"{i:04d}", video, np.zeros(video.shape[:3], np.int32))
        for i, video in enumerate(videos)
    ]
    synthetic.write_tfrecords(sequences, str(directory / "data"), "val", num_shards=2)
    opts = options(clip_length, str(directory / "data" / "val-*.tfrecord"))
    path = directory / "experiment.textproto"
    path.write_text(text_format.MessageToString(opts), encoding="utf-8")
    return path


def two_squares(num_frames: int, height: int = 40, width: int = 70) -> np.ndarray:
    """A red and a green square moving in opposite directions over a grey background."""
    frames = np.full((num_frames, height, width, 3), 90, np.uint8)
    for t in range(num_frames):
        frames[t, 4:16, 4 + 5 * t : 16 + 5 * t] = (255, 0, 0)
        frames[t, 22:34, 50 - 5 * t : 62 - 5 * t] = (0, 255, 0)
    return frames


def _outputs(slots: tf.Tensor, classes: list[int], embeddings: np.ndarray) -> dict:
    """Model outputs whose query q owns the stride-4 cells where slots == q.

    Args:
      slots: int32 [T, h, w], the query of every stride-4 cell.
      classes: class of each query (NUM_CLASSES = void).
      embeddings: float32 [N, D].
    """
    num_queries = len(classes)
    return {
        "mask_logits": (20.0 * tf.one_hot(slots, num_queries) - 10.0)[tf.newaxis],
        "class_logits": 20.0 * tf.one_hot([classes], NUM_CLASSES + 1),
        "query_embeddings": tf.constant(embeddings, tf.float32)[tf.newaxis],
    }


def colour_model(clip: tf.Tensor, training: bool = False) -> dict:
    """Query 0 = red pixels (a disc), 1 = green pixels (a box), 2 = everything else (sky)."""
    del training
    pixels = clip[0, :, ::4, ::4, :]
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 100)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 100)
    slots = tf.where(red, 0, tf.where(green, 1, 2))
    return _outputs(slots, [DISC, BOX, SKY], np.eye(3, dtype=np.float32))


def halves_model(width: int):
    """Query 0 = the left half of a `width`-wide frame (sky), 1 = the right half (grass),
    2 = red pixels (a disc), whatever the frame shows otherwise."""

    def model(clip: tf.Tensor, training: bool = False) -> dict:
        del training
        pixels = clip[0, :, ::4, ::4, :]
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 100)
        columns = tf.range(tf.shape(pixels)[2]) * 4
        left = tf.broadcast_to(columns < width // 2, tf.shape(red))
        slots = tf.where(red, 2, tf.where(left, 0, 1))
        return _outputs(slots, [SKY, GRASS, DISC], np.eye(3, dtype=np.float32))

    return model


def oracle_model(sequence: synthetic.SyntheticSequence, num_queries: int = 16):
    """A network double that segments a known sequence perfectly.

    Every panoptic label of the sequence gets its own query (void gets a void-class query);
    a clip's frames are recognised by comparing their pixels with the sequence's frames.
    Query embeddings are one-hot classes, so instances of one class look alike (a crowd).
    """
    labels = np.unique(sequence.panoptic)
    if len(labels) >= num_queries:
        raise ValueError(f"{len(labels)} labels and void need more than {num_queries} queries")
    semantic = labels // DESCRIPTOR.label_divisor
    classes = np.where(semantic < NUM_CLASSES, semantic, NUM_CLASSES)
    classes = np.pad(classes, [0, num_queries - len(labels)], constant_values=NUM_CLASSES)
    embeddings = np.eye(NUM_CLASSES + 1, dtype=np.float32)[classes]
    void_slot = int(np.searchsorted(labels, DESCRIPTOR.ignore_label * DESCRIPTOR.label_divisor))
    frames = tf.constant(sequence.images, tf.float32)
    slot_maps = tf.constant(np.searchsorted(labels, sequence.panoptic).astype(np.int32))
    height, width = sequence.images.shape[1:3]

    def model(clip: tf.Tensor, training: bool = False) -> dict:
        del training
        crop = clip[0, :, :height, :width]
        same = tf.reduce_all(tf.equal(crop[:, tf.newaxis], frames[tf.newaxis]), axis=[2, 3, 4])
        slots = tf.gather(slot_maps, tf.argmax(tf.cast(same, tf.int32), axis=1))
        padding = [[0, 0], [0, clip.shape[2] - height], [0, clip.shape[3] - width]]
        slots = tf.pad(slots, padding, constant_values=void_slot)[:, ::4, ::4]
        return _outputs(slots, classes.tolist(), embeddings)

    return model
