"""Memory buffer state and its pure update: LA-MB (location-aware) and naive-MB.

Video-kMaX (Shin et al., WACV 2024) decodes the objects that Video-Stitch could not place
against a memory of earlier objects (supplementary Algorithm 1). The memory is a set of
fixed-capacity tensors (`MemoryState`) and `update` is a pure TensorFlow function of
(state, detections) -> (new state, track ids, matching-space size), so it runs eagerly,
inside `tf.function` and inside an exported SavedModel; `memory_buffer.MemoryBuffer`
holds the state between calls.

One `update` call is one decoding step (one clip; `frame_index` is the clip's first
frame, the unit of refresh_frames):

1. Stitched detections (stitched_id >= 0) keep their id without decoding. Their memory
   entry is updated (or inserted if the id is not in memory yet).
2. The other detections are scored against the valid entries that no stitched detection
   claimed (LA-MB: cosine x location term; naive-MB: cosine; see `memory_matching`).
   Pairs need score >= similarity_threshold and, with class_check, the same class.
3. One-to-one assignment of the allowed pairs ("hungarian", the solver shared with the
   loss) or Algorithm 1's per-object "argmax" (`memory_matching.assign`).
4. Unmatched detections get new ids counting up from `next_id` in row order; next_id
   always exceeds every stitched id seen, so stitched and new ids share one id space.
   They enter the memory as new tracks with new_object_insertion "always" (Algorithm 1)
   or, with "when_no_candidates" (the official `lamb_module.py`), only when step 2 had
   no candidate entry at all; otherwise they keep their new id but are not remembered
   (a later stitch of the same object inserts it, as step 1 does).
5. Encoding: a matched or stitched entry takes q_hat <- momentum * q_hat +
   (1 - momentum) * q and the new box (the old box is kept for the velocity); a new entry
   stores q and its box twice (zero velocity); every other entry moves its box at
   constant velocity, b <- b + (b - b_prev). Entries with frame_index - last_seen >
   refresh_frames are then dropped (as the official code, after encoding).
6. Capacity: a new entry takes a free slot, else evicts the least recently seen entry
   that was not matched in this step (lowest last_seen, then lowest slot). When more
   objects arrive than slots can be freed, the extra ones still get ids but are not
   remembered.

Stuff never enters the memory: callers pass thing objects only, and padded rows are
excluded by the per-detection `valid` mask.
"""

from typing import NamedTuple

import tensorflow as tf

from deeplab_video import config
from deeplab_video.post_processing import memory_matching
from deeplab_video.protos import evaluator_pb2

_DEFAULTS = evaluator_pb2.MemoryBufferOptions()


class MemoryState(NamedTuple):
    """Fixed-capacity memory of M tracks with D-dimensional embeddings.

    Attributes:
      embeddings: float32 [M, D], the momentum-averaged query embeddings q_hat.
      boxes: float32 [M, 4], the current (possibly propagated) normalised xyxy box.
      previous_boxes: float32 [M, 4], the box one step earlier (for the velocity).
      classes: int32 [M], semantic class of each entry.
      ids: int32 [M], track id of each entry.
      last_seen: int32 [M], frame_index of the step that last matched the entry.
      valid: bool [M], whether the slot holds a track.
      next_id: int32 [], the next new track id.
    """

    embeddings: tf.Tensor
    boxes: tf.Tensor
    previous_boxes: tf.Tensor
    classes: tf.Tensor
    ids: tf.Tensor
    last_seen: tf.Tensor
    valid: tf.Tensor
    next_id: tf.Tensor


class MemoryParams(NamedTuple):
    """Association settings (MemoryBufferOptions fields of the same names).

    kind, box_distance, assignment, class_check and new_object_insertion choose the graph
    and must be Python values; the numeric fields may also be scalar tensors (float32,
    refresh_frames int32), so that one traced function serves many settings.
    """

    kind: str = _DEFAULTS.kind
    similarity_threshold: float = _DEFAULTS.similarity_threshold
    temperature: float = _DEFAULTS.temperature
    momentum: float = _DEFAULTS.momentum
    refresh_frames: int = _DEFAULTS.refresh_frames
    box_distance: str = _DEFAULTS.box_distance
    assignment: str = _DEFAULTS.assignment
    class_check: bool = _DEFAULTS.class_check
    new_object_insertion: str = _DEFAULTS.new_object_insertion

    @classmethod
    def from_options(cls, options: evaluator_pb2.MemoryBufferOptions) -> "MemoryParams":
        """Reads the association settings of a MemoryBufferOptions proto."""
        return cls(*(getattr(options, name) for name in cls._fields)).validated()

    def validated(self) -> "MemoryParams":
        """Returns self after checking every field.

        Raises:
          ValueError: naming the first invalid field.
        """
        for name, allowed in (
            ("kind", config.MEMORY_BUFFER_KINDS),
            ("box_distance", config.BOX_DISTANCES),
            ("assignment", config.ASSIGNMENTS),
            ("new_object_insertion", config.NEW_OBJECT_INSERTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"memory_buffer.{name} must be one of {allowed}; got '{getattr(self, name)}'."
                )
        if self.temperature <= 0.0:
            raise ValueError("memory_buffer.temperature must be positive.")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError("memory_buffer.momentum must lie in [0, 1].")
        if self.refresh_frames < 0:
            raise ValueError("memory_buffer.refresh_frames must be non-negative.")
        return self


def initial_state(max_tracks: int, embedding_dim: int) -> MemoryState:
    """An empty memory of `max_tracks` slots; the first new track id is 1.

    Raises:
      ValueError: if a size is not positive.
    """
    if max_tracks < 1 or embedding_dim < 1:
        raise ValueError(
            f"max_tracks and embedding_dim must be positive; got {max_tracks}, {embedding_dim}."
        )
    return MemoryState(
        embeddings=tf.zeros([max_tracks, embedding_dim], tf.float32),
        boxes=tf.zeros([max_tracks, 4], tf.float32),
        previous_boxes=tf.zeros([max_tracks, 4], tf.float32),
        classes=tf.fill([max_tracks], -1),
        ids=tf.fill([max_tracks], -1),
        last_seen=tf.zeros([max_tracks], tf.int32),
        valid=tf.zeros([max_tracks], tf.bool),
        next_id=tf.constant(1, tf.int32),
    )


def state_spec(max_tracks: int | None = None, embedding_dim: int | None = None) -> MemoryState:
    """TensorSpecs of a MemoryState (None leaves a size open), e.g. for input_signature."""
    slots = [max_tracks]
    return MemoryState(
        embeddings=tf.TensorSpec([max_tracks, embedding_dim], tf.float32),
        boxes=tf.TensorSpec([max_tracks, 4], tf.float32),
        previous_boxes=tf.TensorSpec([max_tracks, 4], tf.float32),
        classes=tf.TensorSpec(slots, tf.int32),
        ids=tf.TensorSpec(slots, tf.int32),
        last_seen=tf.TensorSpec(slots, tf.int32),
        valid=tf.TensorSpec(slots, tf.bool),
        next_id=tf.TensorSpec([], tf.int32),
    )


def _slot_owner(targets: tf.Tensor, num_slots: tf.Tensor) -> tf.Tensor:
    """Inverts detection -> slot targets (unique, or -1) into slot -> detection (or -1)."""
    hits = tf.equal(targets[:, tf.newaxis], tf.range(num_slots)[tf.newaxis, :])
    rows = tf.range(tf.shape(targets)[0])[:, tf.newaxis]
    # The maximum over an empty axis is the lowest int32, hence the outer maximum.
    return tf.maximum(tf.reduce_max(tf.where(hits, rows, -1), axis=0), -1)


def _rows_of_writers(values: tf.Tensor, writer: tf.Tensor) -> tf.Tensor:
    """Gathers detection rows per slot; slots without a writer (-1) get zeros / False.

    Args:
      values: [N, ...] per-detection values (N may be 0).
      writer: int32 [M], detection index of each slot or -1.

    Returns:
      [M, ...] tensor of `values.dtype`.
    """
    padded = tf.pad(values, [[0, 1]] + [[0, 0]] * (values.shape.rank - 1))
    return tf.gather(padded, tf.where(writer >= 0, writer, tf.shape(values)[0]))


def _insert_slots(state: MemoryState, touched: tf.Tensor, insert: tf.Tensor) -> tf.Tensor:
    """Slots for new entries: free slots first, then least recently seen, never touched.

    Args:
      state: the memory before this step.
      touched: bool [M], entries updated in this step (protected from eviction).
      insert: bool [N], detections to insert.

    Returns:
      int32 [N]: slot of each inserted detection, -1 when not inserted or out of room.
    """
    key = (
        tf.cast(touched, tf.int64) * (1 << 40)
        + tf.cast(state.valid, tf.int64) * (1 << 33)
        + tf.cast(state.last_seen, tf.int64)
        + (1 << 31)
    )
    slot_order = tf.argsort(key, stable=True)
    available = tf.reduce_sum(tf.cast(~touched, tf.int32))
    rank = tf.cumsum(tf.cast(insert, tf.int32), exclusive=True)
    num_slots = tf.shape(slot_order)[0]
    slots = tf.gather(slot_order, tf.minimum(rank, num_slots - 1))
    return tf.where(insert & (rank < available), slots, -1)


class _Decoded(NamedTuple):
    """Steps 1-4 of one update: where every detection goes, and its track id.

    Attributes:
      update_slot: int32 [N], the entry a stitched or matched detection updates, or -1.
      insert: bool [N], detections that become new entries.
      track_ids: int32 [N], every detection's track id (-1 on padding rows).
      next_id: int32 [], the next new track id after this step.
      matching_space: int32 [], M * N of the decoding step.
    """

    update_slot: tf.Tensor
    insert: tf.Tensor
    track_ids: tf.Tensor
    next_id: tf.Tensor
    matching_space: tf.Tensor


def _find_stitched_entries(
    state: MemoryState, stitched: tf.Tensor, stitched_ids: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Step 1: the entry of each stitched detection's id.

    Returns:
      slot: int32 [N], the entry holding the detection's stitched id, or -1.
      claimed: bool [M], entries a stitched detection holds (not decoded against).
    """
    same_id = (
        stitched[:, tf.newaxis]
        & state.valid[tf.newaxis, :]
        & tf.equal(stitched_ids[:, tf.newaxis], state.ids[tf.newaxis, :])
    )
    found = tf.reduce_any(same_id, axis=1)
    slot = tf.where(found, tf.argmax(tf.cast(same_id, tf.int32), axis=1, output_type=tf.int32), -1)
    return slot, tf.reduce_any(same_id, axis=0)


def _match_to_entries(
    state: MemoryState,
    boxes: tf.Tensor,
    embeddings: tf.Tensor,
    classes: tf.Tensor,
    decode: tf.Tensor,
    candidates: tf.Tensor,
    params: MemoryParams,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Steps 2-3: scores against the candidate entries, thresholds and assignment.

    Returns:
      matched_slot: int32 [N], the entry each decoded detection matched, or -1.
      matching_space: int32 [], candidate entries times decoded detections (0 for "none").
    """
    if params.kind == "none":
        return tf.fill(tf.shape(decode), -1), tf.constant(0, tf.int32)
    scores = memory_matching.association_scores(
        boxes,
        embeddings,
        state.boxes,
        state.embeddings,
        location_aware=params.kind == "location_aware",
        squared_distance=params.box_distance == "squared_l2",
        temperature=params.temperature,
    )
    allowed = (
        decode[:, tf.newaxis] & candidates[tf.newaxis, :] & (scores >= params.similarity_threshold)
    )
    if params.class_check:
        allowed &= tf.equal(classes[:, tf.newaxis], state.classes[tf.newaxis, :])
    matching_space = tf.reduce_sum(tf.cast(candidates, tf.int32)) * tf.reduce_sum(
        tf.cast(decode, tf.int32)
    )
    return memory_matching.assign(scores, allowed, params.assignment), matching_space


def _assign_track_ids(
    state: MemoryState,
    valid: tf.Tensor,
    stitched: tf.Tensor,
    stitched_ids: tf.Tensor,
    new: tf.Tensor,
    matched_slot: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Step 4: stitched detections keep their id, matched take the entry's, new count up.

    Returns:
      track_ids: int32 [N] (-1 on padding rows).
      next_id: int32 [], the next new track id.
    """
    base_id = tf.reduce_max(
        tf.concat([[state.next_id], tf.where(stitched, stitched_ids + 1, 0)], axis=0)
    )
    new_ids = base_id + tf.cumsum(tf.cast(new, tf.int32), exclusive=True)
    track_ids = tf.where(
        stitched,
        stitched_ids,
        tf.where(matched_slot >= 0, tf.gather(state.ids, tf.maximum(matched_slot, 0)), new_ids),
    )
    next_id = base_id + tf.reduce_sum(tf.cast(new, tf.int32))
    return tf.where(valid, track_ids, -1), next_id


def _decode(
    state: MemoryState,
    boxes: tf.Tensor,
    embeddings: tf.Tensor,
    classes: tf.Tensor,
    stitched_ids: tf.Tensor,
    valid: tf.Tensor,
    params: MemoryParams,
) -> _Decoded:
    """Steps 1-4 of the module docstring."""
    stitched = valid & (stitched_ids >= 0)
    stitched_slot, claimed = _find_stitched_entries(state, stitched, stitched_ids)
    decode = valid & ~stitched
    candidates = state.valid & ~claimed
    matched_slot, matching_space = _match_to_entries(
        state, boxes, embeddings, classes, decode, candidates, params
    )
    new = decode & (matched_slot < 0)
    track_ids, next_id = _assign_track_ids(state, valid, stitched, stitched_ids, new, matched_slot)
    remembered = new
    if params.new_object_insertion == "when_no_candidates":
        remembered &= ~tf.reduce_any(candidates)
    return _Decoded(
        update_slot=tf.where(stitched, stitched_slot, matched_slot),
        insert=(stitched & (stitched_slot < 0)) | remembered,
        track_ids=track_ids,
        next_id=next_id,
        matching_space=matching_space,
    )


def _slot_writers(state: MemoryState, decoded: _Decoded) -> tuple[tf.Tensor, tf.Tensor]:
    """Step 6: which detection writes each slot (updates first, then insertions).

    Returns:
      writer: int32 [M], the detection written into each slot, or -1.
      inserted: bool [M], slots that receive a new entry.
    """
    num_slots = tf.shape(state.valid)[0]
    touched = tf.reduce_any(
        tf.equal(decoded.update_slot[:, tf.newaxis], tf.range(num_slots)), axis=0
    )
    insert_slot = _insert_slots(state, touched, decoded.insert)
    writer = _slot_owner(
        tf.where(decoded.update_slot >= 0, decoded.update_slot, insert_slot), num_slots
    )
    return writer, _rows_of_writers(decoded.insert, writer)


def _encode(
    state: MemoryState,
    writer: tf.Tensor,
    inserted: tf.Tensor,
    boxes: tf.Tensor,
    embeddings: tf.Tensor,
    classes: tf.Tensor,
    decoded: _Decoded,
    frame_index: tf.Tensor,
    params: MemoryParams,
) -> MemoryState:
    """Step 5: written entries take the detection (momentum-averaged), the others move at
    constant velocity; entries unseen for more than refresh_frames expire."""
    written = writer >= 0
    new_boxes = _rows_of_writers(boxes, writer)
    new_embeddings = _rows_of_writers(embeddings, writer)
    averaged = params.momentum * state.embeddings + (1.0 - params.momentum) * new_embeddings
    column = written[:, tf.newaxis]
    propagated = state.valid[:, tf.newaxis]
    last_seen = tf.where(written, frame_index, state.last_seen)
    return MemoryState(
        embeddings=tf.where(
            column,
            tf.where(inserted[:, tf.newaxis], new_embeddings, averaged),
            state.embeddings,
        ),
        boxes=tf.where(
            column,
            new_boxes,
            tf.where(propagated, 2.0 * state.boxes - state.previous_boxes, state.boxes),
        ),
        previous_boxes=tf.where(
            column,
            tf.where(inserted[:, tf.newaxis], new_boxes, state.boxes),
            tf.where(propagated, state.boxes, state.previous_boxes),
        ),
        classes=tf.where(written, _rows_of_writers(classes, writer), state.classes),
        ids=tf.where(written, _rows_of_writers(decoded.track_ids, writer), state.ids),
        last_seen=last_seen,
        valid=(written | state.valid) & (frame_index - last_seen <= params.refresh_frames),
        next_id=decoded.next_id,
    )


def update(
    state: MemoryState,
    boxes: tf.Tensor,
    embeddings: tf.Tensor,
    classes: tf.Tensor,
    stitched_ids: tf.Tensor,
    valid: tf.Tensor,
    frame_index: tf.Tensor,
    params: MemoryParams,
) -> tuple[MemoryState, tf.Tensor, tf.Tensor]:
    """One decoding + encoding step of the memory buffer (see the module docstring).

    Args:
      state: the memory after the previous step (`initial_state` for a new video).
      boxes: float32 [N, 4], normalised xyxy boxes of the clip's thing objects.
      embeddings: float32 [N, D], their query embeddings.
      classes: int32 [N], their classes.
      stitched_ids: int32 [N], the id Video-Stitch gave each object, or -1.
      valid: bool [N], False on padding rows (ignored entirely).
      frame_index: int32 [], index of the clip (its first frame) in the video.
      params: association settings.

    Returns:
      new_state: the memory after this step.
      track_ids: int32 [N], the track id of each object (-1 on padding rows).
      matching_space: int32 [], M * N of this decoding step: valid entries not claimed by
        a stitched object times objects decoded (0 for kind "none").
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    embeddings = tf.convert_to_tensor(embeddings, tf.float32)
    classes = tf.convert_to_tensor(classes, tf.int32)
    stitched_ids = tf.convert_to_tensor(stitched_ids, tf.int32)
    valid = tf.convert_to_tensor(valid, tf.bool)
    frame_index = tf.convert_to_tensor(frame_index, tf.int32)
    decoded = _decode(state, boxes, embeddings, classes, stitched_ids, valid, params)
    writer, inserted = _slot_writers(state, decoded)
    new_state = _encode(
        state, writer, inserted, boxes, embeddings, classes, decoded, frame_index, params
    )
    return new_state, decoded.track_ids, decoded.matching_space
