"""Tests for deeplab_video.post_processing.tracking (stitch -> memory -> relabel)."""

import numpy as np
import tensorflow as tf

from deeplab_video.post_processing import memory_state, panoptic_inference, tracking
from deeplab_video.protos import evaluator_pb2

DIVISOR = 1000
K = 4  # object rows per clip
DIM = 3


def _clip(
    frames: list[np.ndarray],
    classes: list[int],
    embeddings: list[list[float]],
    boxes: list[list[float]],
) -> panoptic_inference.ClipPanoptic:
    """A ClipPanoptic from hand-drawn frames holding clip-local ids 1..len(classes)."""
    count = len(classes)
    pad = K - count
    return panoptic_inference.ClipPanoptic(
        panoptic=tf.constant(np.stack(frames), tf.int32),
        num_objects=tf.constant(count, tf.int32),
        query_indices=tf.constant(list(range(count)) + [-1] * pad, tf.int32),
        local_ids=tf.constant(list(range(1, count + 1)) + [0] * pad, tf.int32),
        classes=tf.constant(classes + [-1] * pad, tf.int32),
        scores=tf.constant([0.9] * count + [0.0] * pad, tf.float32),
        boxes=tf.constant(boxes + [[0.0] * 4] * pad, tf.float32),
        embeddings=tf.constant(embeddings + [[0.0] * DIM] * pad, tf.float32),
    )


def _frame(*objects: tuple[tuple[slice, slice], int]) -> np.ndarray:
    """6x8 frame of stuff class 0 with thing (class 3) objects at the given places."""
    frame = np.zeros((6, 8), np.int32)
    for (rows, cols), local_id in objects:
        frame[rows, cols] = 3 * DIVISOR + local_id
    return frame


def _params(stitching: bool = True) -> tracking.TrackingParams:
    options = evaluator_pb2.EvaluatorOptions()
    options.stitching.enabled = stitching
    options.memory_buffer.similarity_threshold = 0.5
    return tracking.TrackingParams.from_options(options, DIVISOR)


LEFT = (slice(0, 3), slice(0, 3))
RIGHT = (slice(3, 6), slice(5, 8))


def _two_clips():
    """Clip 1 sees A (left) and B (right); clip 2 shares its first frame with clip 1's
    last one, lists the objects in swapped rows, and B's embedding changed completely,
    so only stitching can keep B's id."""
    first = _clip(
        [_frame((LEFT, 1), (RIGHT, 2)), _frame((LEFT, 1), (RIGHT, 2))],
        [3, 3],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        [[0.0, 0.0, 0.375, 0.5], [0.625, 0.5, 1.0, 1.0]],
    )
    second = _clip(
        [_frame((LEFT, 2), (RIGHT, 1)), _frame((LEFT, 2), (RIGHT, 1))],
        [3, 3],
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
        [[0.625, 0.5, 1.0, 1.0], [0.0, 0.0, 0.375, 0.5]],
    )
    return first, second


def _run(step, clips, params):
    state = tracking.initial_state(K, 8, DIM)
    ids, maps, spaces = [], [], []
    for index, clip in enumerate(clips):
        state, track_ids, panoptic, space = step(state, clip, tf.constant(index), params)
        ids.append(track_ids.numpy())
        maps.append(panoptic.numpy())
        spaces.append(int(space))
    return ids, maps, spaces


def test_stitching_keeps_ids_that_appearance_would_lose():
    ids, maps, spaces = _run(tracking.track_clip, _two_clips(), _params())
    np.testing.assert_array_equal(ids[0][:2], [1, 2])
    # Row 0 of clip 2 is B (right), row 1 is A (left): ids follow the objects.
    np.testing.assert_array_equal(ids[1][:2], [2, 1])
    np.testing.assert_array_equal(ids[1][2:], [-1, -1])
    assert maps[1][0, 4, 6] == 3 * DIVISOR + 2 and maps[1][0, 1, 1] == 3 * DIVISOR + 1
    assert maps[1][0, 0, 7] == 0  # stuff keeps instance 0
    # Both objects were stitched, so the memory decoded nothing in clip 2.
    assert spaces == [0, 0]


def test_without_stitching_the_memory_decides():
    ids, _, spaces = _run(tracking.track_clip, _two_clips(), _params(stitching=False))
    # A (same embedding, same box) is found in memory; B's new embedding is a new track.
    assert ids[1][1] == 1
    assert ids[1][0] == 3
    assert spaces[1] == 2 * 2


def test_tf_function_gives_the_same_ids_as_eager():
    clips = _two_clips()
    eager_ids, eager_maps, _ = _run(tracking.track_clip, clips, _params())
    graph_ids, graph_maps, _ = _run(tf.function(tracking.track_clip), clips, _params())
    for eager, graph in zip(eager_ids + eager_maps, graph_ids + graph_maps, strict=True):
        np.testing.assert_array_equal(eager, graph)


def test_initial_state_shapes():
    state = tracking.initial_state(K, 8, DIM)
    assert state.previous_frame.shape == (0, 0)
    assert state.previous_track_ids.shape == (K,)
    assert isinstance(state.memory, memory_state.MemoryState)
    assert int(state.num_clips) == 0
