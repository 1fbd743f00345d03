"""Tests for deeplab_video.post_processing.memory_state (the pure TF update)."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import config
from deeplab_video.post_processing import memory_state

PARAMS = memory_state.MemoryParams(similarity_threshold=0.5)


def _step(state, frame, boxes, embeddings, classes, stitched=None, valid=None, params=PARAMS):
    num = len(classes)
    stitched = [-1] * num if stitched is None else stitched
    valid = [True] * num if valid is None else valid
    return memory_state.update(
        state,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(embeddings, np.float32).reshape(num, state.embeddings.shape[1]),
        np.asarray(classes, np.int32),
        np.asarray(stitched, np.int32),
        np.asarray(valid, bool),
        np.int32(frame),
        params,
    )


def _slot(state, track_id):
    return int(np.flatnonzero(state.valid.numpy() & (state.ids.numpy() == track_id))[0])


def test_initial_state_and_spec():
    state = memory_state.initial_state(5, 3)
    spec = memory_state.state_spec(5, 3)
    for name in memory_state.MemoryState._fields:
        assert spec._asdict()[name].is_compatible_with(state._asdict()[name]), name
    assert int(state.next_id) == 1 and not state.valid.numpy().any()
    with pytest.raises(ValueError, match="positive"):
        memory_state.initial_state(0, 3)


def test_boxes_propagate_at_constant_velocity_while_unmatched():
    state = memory_state.initial_state(4, 2)
    state, ids, _ = _step(state, 0, [0.1, 0.2, 0.2, 0.3], [1, 0], [1])
    slot = _slot(state, 1)
    # A new entry stores its box twice: zero velocity.
    np.testing.assert_allclose(state.previous_boxes[slot], [0.1, 0.2, 0.2, 0.3])
    state, ids, _ = _step(state, 1, [0.15, 0.2, 0.25, 0.3], [1, 0], [1])
    assert ids.numpy().tolist() == [1]
    np.testing.assert_allclose(state.boxes[slot], [0.15, 0.2, 0.25, 0.3], atol=1e-6)
    np.testing.assert_allclose(state.previous_boxes[slot], [0.1, 0.2, 0.2, 0.3], atol=1e-6)
    for frame in (2, 3):
        state, _, _ = _step(state, frame, [], [], [])
    np.testing.assert_allclose(state.boxes[slot], [0.25, 0.2, 0.35, 0.3], atol=1e-6)
    np.testing.assert_allclose(state.previous_boxes[slot], [0.2, 0.2, 0.3, 0.3], atol=1e-6)
    np.testing.assert_array_equal(state.last_seen[slot], 1)


def test_stitched_object_updates_its_entry_with_momentum():
    state = memory_state.initial_state(4, 2)
    state, _, _ = _step(state, 0, [0, 0, 0.1, 0.1], [1.0, 0.0], [2])
    params = PARAMS._replace(momentum=0.6)
    state, ids, space = _step(
        state, 1, [0.5, 0.5, 0.6, 0.6], [0.0, 1.0], [2], stitched=[1], params=params
    )
    assert ids.numpy().tolist() == [1] and int(space) == 0
    slot = _slot(state, 1)
    np.testing.assert_allclose(state.embeddings[slot], [0.6, 0.4], atol=1e-6)
    np.testing.assert_allclose(state.boxes[slot], [0.5, 0.5, 0.6, 0.6])
    np.testing.assert_allclose(state.previous_boxes[slot], [0, 0, 0.1, 0.1])
    assert int(state.last_seen[slot]) == 1


def test_expiry_after_refresh_frames():
    params = PARAMS._replace(refresh_frames=1)
    state = memory_state.initial_state(4, 2)
    state, _, _ = _step(state, 0, [0, 0, 0.1, 0.1], [1, 0], [2], params=params)
    state, _, _ = _step(state, 1, [], [], [], params=params)
    assert state.valid.numpy().sum() == 1  # 1 - 0 <= 1: kept
    state, _, _ = _step(state, 2, [], [], [], params=params)
    assert state.valid.numpy().sum() == 0  # 2 - 0 > 1: dropped


def test_full_memory_evicts_least_recently_seen():
    state = memory_state.initial_state(2, 2)
    state, ids_a, _ = _step(state, 0, [0, 0, 0.1, 0.1], [1, 0], [1])
    state, ids_b, _ = _step(state, 1, [0.5, 0.5, 0.6, 0.6], [0, 1], [2])
    state, ids_c, _ = _step(state, 2, [0.8, 0.8, 0.9, 0.9], [1, 1], [3])
    assert [ids_a.numpy()[0], ids_b.numpy()[0], ids_c.numpy()[0]] == [1, 2, 3]
    assert sorted(state.ids.numpy().tolist()) == [2, 3]  # track 1 (seen at 0) evicted
    # Track 1 comes back: it is forgotten and gets a new id; track 2 is evicted now.
    state, ids, _ = _step(state, 3, [0, 0, 0.1, 0.1], [1, 0], [1])
    assert ids.numpy().tolist() == [4]
    assert sorted(state.ids.numpy().tolist()) == [3, 4]


@pytest.mark.parametrize("insertion", config.NEW_OBJECT_INSERTIONS)
def test_new_object_insertion(insertion):
    """Hand-worked: tracks 1 and 2 in memory; a third object C arrives while they are
    candidates, then a fourth D while stitched objects claim both."""
    params = PARAMS._replace(new_object_insertion=insertion)
    always = insertion == "always"
    a, b = ([0.1, 0.1, 0.2, 0.2], [1, 0]), ([0.6, 0.6, 0.7, 0.7], [0, 1])
    c, d = ([0.3, 0.8, 0.4, 0.9], [-1, 0]), ([0.8, 0.1, 0.9, 0.2], [0, -1])

    def step(state, frame, objects, stitched=None):
        boxes, embeddings = zip(*objects, strict=True)
        return _step(state, frame, boxes, embeddings, [1] * len(objects), stitched, None, params)

    state = memory_state.initial_state(8, 2)
    # An empty memory has no candidates: both rules remember A and B.
    state, ids, _ = step(state, 0, [a, b])
    assert ids.numpy().tolist() == [1, 2] and state.valid.numpy().sum() == 2
    # A matches track 1; C matches nothing while 1 and 2 are candidates: new id 3 either
    # way, remembered only by "always".
    state, ids, space = step(state, 1, [a, c])
    assert ids.numpy().tolist() == [1, 3] and int(space) == 4
    remembered = sorted(state.ids.numpy()[state.valid.numpy()].tolist())
    assert remembered == ([1, 2, 3] if always else [1, 2])
    # Stitched objects claim 1 and 2 (and, with "always", C stitches to 3): with no
    # candidate left, D is remembered by both rules.
    state, ids, space = step(state, 2, [a, b, c, d], stitched=[1, 2, 3, -1])
    assert ids.numpy().tolist() == [1, 2, 3, 4]
    assert int(space) == 0
    # A stitch inserts C's track 3 under "when_no_candidates" too.
    assert sorted(state.ids.numpy()[state.valid.numpy()].tolist()) == [1, 2, 3, 4]


def test_unknown_new_object_insertion_is_rejected():
    with pytest.raises(ValueError, match="new_object_insertion"):
        memory_state.MemoryParams(new_object_insertion="never").validated()


def test_padded_rows_are_ignored():
    state = memory_state.initial_state(4, 2)
    state, ids, space = _step(
        state, 0, [[0, 0, 0.1, 0.1]] * 3, [[1, 0]] * 3, [1, 1, 1], valid=[True, False, True]
    )
    assert ids.numpy().tolist() == [1, -1, 2]
    assert state.valid.numpy().sum() == 2 and int(state.next_id) == 3
    assert int(space) == 0


def test_tf_function_gives_the_same_ids_and_state_as_eager():
    rng = np.random.default_rng(0)
    num, dim = 6, 4
    base_embeddings = rng.normal(size=(num, dim)).astype(np.float32)
    run = tf.function(lambda *args: memory_state.update(*args, PARAMS))
    eager_state = graph_state = memory_state.initial_state(5, dim)
    seen, reused = set(), 0
    for frame in range(5):
        boxes = np.sort(rng.uniform(size=(num, 4)), axis=1).astype(np.float32)
        embeddings = base_embeddings + 0.3 * rng.normal(size=(num, dim)).astype(np.float32)
        classes = rng.integers(0, 2, size=num).astype(np.int32)
        stitched = np.where(rng.uniform(size=num) < 0.3, rng.integers(1, 9, size=num), -1)
        stitched = np.where(np.arange(num) == np.argmax(stitched), stitched, -1).astype(np.int32)
        valid = rng.uniform(size=num) < 0.8
        args = (boxes, embeddings, classes, stitched, valid, np.int32(frame))
        eager_state, eager_ids, eager_space = memory_state.update(eager_state, *args, PARAMS)
        graph_state, graph_ids, graph_space = run(graph_state, *args)
        np.testing.assert_array_equal(graph_ids, eager_ids)
        decoded = eager_ids.numpy()[valid & (stitched < 0)]
        reused += len(seen.intersection(decoded.tolist()))
        seen.update(eager_ids.numpy().tolist())
        assert int(graph_space) == int(eager_space)
        for name in memory_state.MemoryState._fields:
            np.testing.assert_allclose(
                getattr(graph_state, name), getattr(eager_state, name), atol=1e-6, err_msg=name
            )
    assert reused > 0  # the assignment matched decoded objects to earlier tracks


def test_params_from_options_and_validation():
    from deeplab_video.protos import evaluator_pb2

    params = memory_state.MemoryParams.from_options(
        evaluator_pb2.MemoryBufferOptions(box_distance="squared_l2", refresh_frames=3)
    )
    assert params.box_distance == "squared_l2" and params.refresh_frames == 3
    assert params.kind == "location_aware" and params.assignment == "hungarian"
    with pytest.raises(ValueError, match="assignment"):
        memory_state.MemoryParams(assignment="greedy").validated()
    with pytest.raises(ValueError, match="momentum"):
        memory_state.MemoryParams(momentum=1.5).validated()
