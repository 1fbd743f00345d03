"""Tests for deeplab_video.post_processing.memory_buffer: Algorithm 1 case by case."""

import numpy as np
import pytest

from deeplab_video.post_processing import memory_buffer
from deeplab_video.protos import evaluator_pb2

CAR, PERSON = 13, 11


def _box(x0, y0, size=0.1):
    return [x0, y0, x0 + size, y0 + size]


def _unit(angle):
    """A 2-D embedding at `angle` radians: cos of two embeddings = cos(angle difference)."""
    return [np.cos(angle), np.sin(angle)]


def _associate(mb, frame, objects, stitched=None):
    """objects: list of (box, embedding, class)."""
    if not objects:
        return mb.associate(frame, np.zeros([0, 4]), np.zeros([0, 2]), [], [])
    boxes, embeddings, classes = zip(*objects, strict=True)
    return mb.associate(frame, boxes, embeddings, classes, stitched).tolist()


def test_new_objects_count_up_from_one_and_stitched_ids_are_kept():
    mb = memory_buffer.MemoryBuffer(similarity_threshold=0.5)
    a, b = (_box(0.1, 0.1), _unit(0.0), CAR), (_box(0.6, 0.6), _unit(1.5), CAR)
    assert _associate(mb, 0, [a, b]) == [1, 2]
    # Object b looks and sits exactly like track 1, but stitching says 2: it keeps 2 and
    # is not decoded; a (unstitched) is decoded against the remaining entry 1.
    b_like_a = (a[0], a[1], CAR)
    assert _associate(mb, 1, [b_like_a, a], stitched=[2, -1]) == [2, 1]
    # A stitched id not in memory yet is inserted; new ids continue above it.
    c = (_box(0.3, 0.8), _unit(3.0), PERSON)
    d = (_box(0.8, 0.1), _unit(-1.5), PERSON)
    assert _associate(mb, 2, [c, d], stitched=[7, -1]) == [7, 8]
    assert _associate(mb, 3, [c, d]) == [7, 8]


@pytest.mark.parametrize("hidden_frames,same_id", [(2, True), (3, False)])
def test_hidden_object_returns_near_its_propagated_box_within_tau(hidden_frames, same_id):
    # Moves 0.15 per frame in x. Reappearing, it is 0.15 * sqrt(2) from the propagated
    # box (score exp(-0.21) = 0.81) but 0.45 * sqrt(2) from its last seen box
    # (score 0.53): only the propagated box passes the 0.7 threshold.
    mb = memory_buffer.MemoryBuffer(similarity_threshold=0.7, refresh_frames=2)
    embedding = _unit(0.3)
    assert _associate(mb, 0, [(_box(0.1, 0.4), embedding, CAR)]) == [1]
    assert _associate(mb, 1, [(_box(0.25, 0.4), embedding, CAR)]) == [1]
    for frame in range(2, 2 + hidden_frames):
        _associate(mb, frame, [])
    frame = 2 + hidden_frames
    ids = _associate(mb, frame, [(_box(0.1 + 0.15 * frame, 0.4), embedding, CAR)])
    assert ids == ([1] if same_id else [2])


def test_class_mismatch_never_matches():
    obj = (_box(0.2, 0.2), _unit(0.0))
    mb = memory_buffer.MemoryBuffer(similarity_threshold=0.1)
    _associate(mb, 0, [(*obj, CAR)])
    assert _associate(mb, 1, [(*obj, PERSON)]) == [2]
    mb = memory_buffer.MemoryBuffer(similarity_threshold=0.1, class_check=False)
    _associate(mb, 0, [(*obj, CAR)])
    assert _associate(mb, 1, [(*obj, PERSON)]) == [1]


@pytest.mark.parametrize("cosine,same_id", [(0.69, False), (0.71, True)])
def test_similarity_threshold_is_respected(cosine, same_id):
    mb = memory_buffer.MemoryBuffer(kind="naive", similarity_threshold=0.7)
    _associate(mb, 0, [(_box(0.2, 0.2), _unit(0.0), CAR)])
    ids = _associate(mb, 1, [(_box(0.2, 0.2), _unit(np.arccos(cosine)), CAR)])
    assert ids == ([1] if same_id else [2])


def test_momentum_update_by_hand():
    mb = memory_buffer.MemoryBuffer(momentum=0.8, similarity_threshold=0.5)
    _associate(mb, 0, [(_box(0.2, 0.2), [1.0, 0.0], CAR)])
    _associate(mb, 1, [(_box(0.21, 0.2), [0.6, 0.8], CAR)])
    slot = int(np.flatnonzero(mb.state.ids.numpy() == 1)[0])
    # 0.8 * [1, 0] + 0.2 * [0.6, 0.8] = [0.92, 0.16]
    np.testing.assert_allclose(mb.state.embeddings.numpy()[slot], [0.92, 0.16], atol=1e-6)
    np.testing.assert_allclose(mb.state.boxes.numpy()[slot], _box(0.21, 0.2), atol=1e-6)


def _crossing(kind):
    """Two look-alikes pass each other on two lanes; at frame 1 the appearance noise makes
    each detection look more like the other track."""
    mb = memory_buffer.MemoryBuffer(kind=kind, similarity_threshold=0.7)
    first = _associate(
        mb, 0, [(_box(0.2, 0.2), _unit(0.1), CAR), (_box(0.7, 0.6), _unit(-0.1), CAR)]
    )
    second = _associate(
        mb, 1, [(_box(0.3, 0.2), _unit(-0.12), CAR), (_box(0.6, 0.6), _unit(0.12), CAR)]
    )
    return first, second


def test_location_keeps_ids_where_appearance_alone_swaps_them():
    first, second = _crossing("location_aware")
    assert first == [1, 2] and second == [1, 2]
    first, second = _crossing("naive")
    assert first == [1, 2] and second == [2, 1]


def test_argmax_assignment_gives_a_contested_entry_to_the_best_score():
    def run(assignment):
        mb = memory_buffer.MemoryBuffer(
            kind="naive", similarity_threshold=0.5, assignment=assignment
        )
        _associate(mb, 0, [(_box(0.1, 0.1), _unit(0.0), CAR), (_box(0.5, 0.5), _unit(1.2), CAR)])
        # Both detections prefer track 1 (0.5 and 0.45 rad away); the second fits it better.
        return _associate(
            mb, 1, [(_box(0.1, 0.1), _unit(0.5), CAR), (_box(0.5, 0.5), _unit(-0.45), CAR)]
        )

    assert run("argmax") == [3, 1]
    # Hungarian: cos(0.7) + cos(0.45) (det 0 -> track 2) beats cos(0.5) alone.
    assert run("hungarian") == [2, 1]


def test_matching_space_sizes_are_recorded():
    mb = memory_buffer.MemoryBuffer(similarity_threshold=0.5)
    a, b = (_box(0.1, 0.1), _unit(0.0), CAR), (_box(0.6, 0.6), _unit(1.5), CAR)
    _associate(mb, 0, [a, b])  # empty memory: 0 x 2
    _associate(mb, 1, [a, b])  # 2 x 2
    _associate(mb, 2, [a, b], stitched=[1, -1])  # entry 1 claimed: 1 x 1
    _associate(mb, 3, [a, b], stitched=[1, 2])  # nothing decoded: 0
    assert mb.matching_space_sizes == [0, 4, 1, 0]
    mb.reset()
    assert mb.matching_space_sizes == [] and _associate(mb, 0, [a]) == [1]


def test_kind_none_gives_every_unstitched_object_a_new_id():
    mb = memory_buffer.MemoryBuffer(kind="none")
    a = (_box(0.1, 0.1), _unit(0.0), CAR)
    assert _associate(mb, 0, [a]) == [1]
    assert _associate(mb, 1, [a, a], stitched=[1, -1]) == [1, 2]
    assert mb.matching_space_sizes == [0, 0]


def test_online_objects_met_while_tracks_are_candidates_are_not_remembered():
    """The official rule, online: B appears beside tracked A, so A's entry was a candidate
    and B is not remembered; when B shows again it gets another new id."""
    options = evaluator_pb2.MemoryBufferOptions(
        similarity_threshold=0.5, new_object_insertion="when_no_candidates"
    )
    official = memory_buffer.MemoryBuffer.from_options(options)
    algorithm_1 = memory_buffer.MemoryBuffer(similarity_threshold=0.5)
    a = (_box(0.1, 0.1), _unit(0.0), CAR)
    b = (_box(0.6, 0.6), _unit(np.pi / 2), CAR)
    assert [_associate(mb, 0, [a]) for mb in (official, algorithm_1)] == [[1], [1]]
    assert [_associate(mb, 1, [a, b]) for mb in (official, algorithm_1)] == [[1, 2], [1, 2]]
    assert [_associate(mb, 2, [a, b]) for mb in (official, algorithm_1)] == [[1, 3], [1, 2]]


def test_from_options_and_validation():
    options = evaluator_pb2.MemoryBufferOptions(kind="naive", max_tracks=3, momentum=0.5)
    mb = memory_buffer.MemoryBuffer.from_options(options)
    assert mb.params.kind == "naive" and mb.params.momentum == 0.5 and mb.max_tracks == 3
    assert mb.params.similarity_threshold == pytest.approx(0.7)
    with pytest.raises(ValueError, match="kind"):
        memory_buffer.MemoryBuffer(kind="lstm")
    with pytest.raises(ValueError, match="temperature"):
        memory_buffer.MemoryBuffer(temperature=0.0)
    with pytest.raises(ValueError, match="max_tracks"):
        memory_buffer.MemoryBuffer(max_tracks=0)
    mb = memory_buffer.MemoryBuffer()
    with pytest.raises(ValueError, match="same length"):
        mb.associate(0, np.zeros([2, 4]), np.zeros([2, 3]), [1], [-1, -1])
    mb.associate(0, np.zeros([1, 4]), np.zeros([1, 3]), [1])
    with pytest.raises(ValueError, match="reset"):
        mb.associate(1, np.zeros([1, 4]), np.zeros([1, 5]), [1])
