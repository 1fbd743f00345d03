"""Times per-clip association (object features + Video-Stitch + memory buffer) on CPU.

A deterministic KITTI-STEP-sized video (375 x 1242 frames, near-online clips of T=2 at
stride 1) holds --objects moving boxes of person / car over road and sky; every object is
hidden in about one frame in ten, so some objects miss the overlap frame and go through
the memory buffer. Each clip comes as a panoptic clip with clip-local instance ids
(shuffled), per-row classes and query embeddings, as panoptic inference returns it.

Per clip, both implementations extract the objects' boxes (union over the clip) and
embeddings, stitch on the overlap frame, run the LA-MB memory buffer and relabel the clip
with video ids:
- "tf": the library (object_features, video_stitch, memory_state) in one tf.function;
- "naive": a straightforward version of the same logic with Python loops over ids and a
  full-frame mask per id (pair), as the official Video-kMaX code does, and a dict memory
  with scipy's Hungarian solver.
The outputs are copied to the host before the clock stops. Each case prints one JSON
record (device, objects, frame size, T, warm-up and timed clips, median and p90 ms per
clip for both, the speed-up, whether both gave the same video panoptic maps, and how many
objects per clip the memory buffer decoded after the first clip).

  python benchmarks/association.py --objects=10,50,100
"""

import json
import time

import device_info
import numpy as np
import scipy.optimize
import tensorflow as tf
from absl import app, flags

from deeplab_video.post_processing import memory_state, object_features, video_stitch
from deeplab_video.protos import evaluator_pb2

_OBJECTS = flags.DEFINE_list("objects", ["10", "50", "100"], "Objects per video, one case each.")
_HEIGHT = flags.DEFINE_integer("height", 375, "Frame height (KITTI-STEP: 375).")
_WIDTH = flags.DEFINE_integer("width", 1242, "Frame width (KITTI-STEP: 1242).")
_CLIPS = flags.DEFINE_integer("clips", 20, "Timed clips of the TF path per case.")
_NAIVE_CLIPS = flags.DEFINE_integer("naive_clips", 4, "Timed clips of the naive path.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed clips before timing (both paths).")

T, DIVISOR, THINGS, ROAD, SKY = 2, 1000, (11, 13), 0, 10
MAX_OBJECTS, NUM_QUERIES, EMBEDDING_DIM = 128, 128, 128
PARAMS = memory_state.MemoryParams()
MAX_TRACKS = evaluator_pb2.MemoryBufferOptions().max_tracks
STITCHING = evaluator_pb2.StitchingOptions()


def make_clips(num_objects, num_clips, height, width, seed=0):
    """Panoptic clips of a moving-box video as panoptic inference would return them.

    Returns:
      A list of dicts: 'panoptic' int32 [T, H, W] (clip-local ids), 'classes' int32 [K]
      (-1 padding), 'num_objects', 'row_queries' int32 [K] (query of each row, 0 on
      padding), 'query_embeddings' float32 [NUM_QUERIES, D].
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers([12, 16], [64, 96], size=(num_objects, 2))
    positions = rng.uniform([height / 3, 0], [height, width], size=(num_objects, 2))
    velocity = rng.uniform([-2, -6], [2, 6], size=(num_objects, 2))
    classes = rng.choice(THINGS, size=num_objects)
    identity = rng.normal(size=(num_objects, EMBEDDING_DIM))
    frames = []
    for _ in range(num_clips + 1):
        frame = np.full([height, width], ROAD * DIVISOR, np.int32)
        frame[: height // 3] = SKY * DIVISOR
        hidden = rng.uniform(size=num_objects) < 0.1
        for k in range(num_objects):
            y, x = positions[k].astype(int).clip(0, [height - 1, width - 1])
            if not hidden[k]:
                frame[y : y + sizes[k, 0], x : x + sizes[k, 1]] = -(k + 1)  # video object k
        frames.append(frame)
        positions += velocity
        velocity *= np.where((positions < 0) | (positions > [height, width]), -1, 1)
    clips = []
    for start in range(num_clips):
        video = np.stack(frames[start : start + T])
        present = np.unique(-video[video < 0]) - 1
        rows = rng.permutation(present)[:MAX_OBJECTS]
        local = np.zeros(num_objects + 1, np.int32)
        local[rows + 1] = np.arange(1, rows.size + 1)
        objects = np.where(video < 0, -video, 0)
        panoptic = np.where(
            video < 0, classes[objects - 1] * DIVISOR + local[objects], video
        ).astype(np.int32)
        queries = rng.permutation(NUM_QUERIES)[: rows.size]
        embeddings = rng.normal(size=(NUM_QUERIES, EMBEDDING_DIM))
        embeddings[queries] = identity[rows] + 0.3 * rng.normal(size=(rows.size, EMBEDDING_DIM))
        pad = MAX_OBJECTS - rows.size
        clips.append(
            {
                "panoptic": panoptic,
                "classes": np.pad(classes[rows], [0, pad], constant_values=-1).astype(np.int32),
                "num_objects": np.array(rows.size, np.int32),
                "row_queries": np.pad(queries, [0, pad]).astype(np.int32),
                "query_embeddings": embeddings.astype(np.float32),
            }
        )
    return clips


@tf.function
def _tf_step(state, previous, clip, frame_index):
    """One clip: boxes + embeddings, stitch, memory buffer, relabel (library code)."""
    panoptic = clip["panoptic"]
    boxes, _ = object_features.object_boxes(tf.math.floormod(panoptic, DIVISOR), MAX_OBJECTS)
    valid = tf.range(MAX_OBJECTS) < clip["num_objects"]
    embeddings = tf.gather(clip["query_embeddings"], clip["row_queries"])
    stitched = video_stitch.stitch(
        previous["frame"],
        previous["track_ids"],
        previous["classes"],
        panoptic[0],
        clip["classes"],
        clip["num_objects"],
        DIVISOR,
        STITCHING,
    )
    state, track_ids, _ = memory_state.update(
        state, boxes, embeddings, clip["classes"], stitched, valid, frame_index, PARAMS
    )
    previous = {"frame": panoptic[-1], "track_ids": track_ids, "classes": clip["classes"]}
    decoded = tf.reduce_sum(tf.cast(valid & (stitched < 0), tf.int32))
    return state, previous, video_stitch.relabel(panoptic, track_ids, DIVISOR), decoded


def run_tf(clips):
    state = memory_state.initial_state(MAX_TRACKS, EMBEDDING_DIM)
    previous = {
        "frame": tf.zeros(clips[0]["panoptic"].shape[1:], tf.int32),
        "track_ids": tf.fill([MAX_OBJECTS], -1),
        "classes": tf.fill([MAX_OBJECTS], -1),
    }
    for index, clip in enumerate(clips):
        start = time.perf_counter()
        state, previous, panoptic, decoded = _tf_step(
            state, previous, clip, np.array(index, np.int32)
        )
        panoptic, decoded = panoptic.numpy(), int(decoded)
        yield panoptic, time.perf_counter() - start, decoded


class NaiveTracker:
    """The same association, written the straightforward way (per-id masks, dicts)."""

    def __init__(self):
        self.memory = {}  # video id -> dict(embedding, box, previous_box, cls, last_seen)
        self.next_id = 1
        self.previous = None  # (last frame with local ids, {local id: (video id, class)})

    @staticmethod
    def _objects(panoptic, clip):
        """{local id: (class, box, embedding)} with one full-clip mask per id."""
        _, height, width = panoptic.shape
        objects = {}
        for value in np.unique(panoptic):
            local = int(value % DIVISOR)
            if local == 0:
                continue
            union = (panoptic == value).sum(axis=0) > 0
            ys, xs = np.nonzero(union)
            box = np.array(
                [
                    xs.min() / width,
                    ys.min() / height,
                    (xs.max() + 1) / width,
                    (ys.max() + 1) / height,
                ]
            )
            embedding = clip["query_embeddings"][clip["row_queries"][local - 1]]
            objects[local] = (int(value // DIVISOR), box, embedding)
        return objects

    def _stitch(self, current_frame, objects):
        if self.previous is None:
            return {}
        previous_frame, previous_objects = self.previous
        overlap = {}
        for p in sorted(previous_objects):
            previous_mask = previous_frame % DIVISOR == p
            for c in sorted(objects):
                current_mask = current_frame % DIVISOR == c
                intersection = (previous_mask & current_mask).sum()
                union = (previous_mask | current_mask).sum()
                same_class = previous_objects[p][1] == objects[c][0]
                if union and same_class and intersection / union > STITCHING.overlap_threshold:
                    overlap[p, c] = intersection / union
        best_for_previous, best_for_current = {}, {}
        for (p, c), value in overlap.items():
            if value > overlap.get((p, best_for_previous.get(p)), -1):
                best_for_previous[p] = c
            if value > overlap.get((best_for_current.get(c), c), -1):
                best_for_current[c] = p
        return {
            c: previous_objects[p][0]
            for c, p in best_for_current.items()
            if best_for_previous[p] == c
        }

    def _decode(self, objects, stitched, frame_index):
        decode = [local for local in sorted(objects) if local not in stitched]
        candidates = [i for i in self.memory if i not in stitched.values()]
        matches = {}
        if decode and candidates:
            scores = np.zeros([len(decode), len(candidates)])
            for r, local in enumerate(decode):
                cls, box, embedding = objects[local]
                for c, track in enumerate(candidates):
                    entry = self.memory[track]
                    cosine = (
                        embedding
                        @ entry["embedding"]
                        / (np.linalg.norm(embedding) * np.linalg.norm(entry["embedding"]))
                    )
                    score = cosine * np.exp(-np.linalg.norm(box - entry["box"]))
                    if score >= PARAMS.similarity_threshold and cls == entry["cls"]:
                        scores[r, c] = score
            rows, cols = scipy.optimize.linear_sum_assignment(scores, maximize=True)
            matches = {
                decode[r]: candidates[c]
                for r, c in zip(rows, cols, strict=True)
                if scores[r, c] > 0
            }
        ids = dict(stitched)
        self.next_id = max([self.next_id] + [i + 1 for i in stitched.values()])
        for local in decode:
            if local in matches:
                ids[local] = matches[local]
            else:
                ids[local] = self.next_id
                self.next_id += 1
        return ids

    def _encode(self, objects, ids, frame_index):
        for track, entry in self.memory.items():
            if track not in ids.values():
                entry["previous_box"], entry["box"] = (
                    entry["box"],
                    2 * entry["box"] - entry["previous_box"],
                )
        for local, track in ids.items():
            cls, box, embedding = objects[local]
            if track in self.memory:
                entry = self.memory[track]
                entry["embedding"] = (
                    PARAMS.momentum * entry["embedding"] + (1 - PARAMS.momentum) * embedding
                )
                entry["previous_box"], entry["box"] = entry["box"], box
                entry["cls"], entry["last_seen"] = cls, frame_index
            else:
                self.memory[track] = {
                    "embedding": embedding,
                    "box": box,
                    "previous_box": box,
                    "cls": cls,
                    "last_seen": frame_index,
                }
        for track in list(self.memory):
            if frame_index - self.memory[track]["last_seen"] > PARAMS.refresh_frames:
                del self.memory[track]

    def step(self, clip, frame_index):
        panoptic = clip["panoptic"]
        objects = self._objects(panoptic, clip)
        stitched = self._stitch(panoptic[0], objects)
        ids = self._decode(objects, stitched, frame_index)
        self._encode(objects, ids, frame_index)
        relabelled = panoptic.copy()
        for local, track in ids.items():
            mask = panoptic % DIVISOR == local
            relabelled[mask] = panoptic[mask] - local + track
        self.previous = (panoptic[-1], {local: (ids[local], objects[local][0]) for local in ids})
        return relabelled


def run_naive(clips):
    tracker = NaiveTracker()
    for index, clip in enumerate(clips):
        start = time.perf_counter()
        panoptic = tracker.step(clip, index)
        yield panoptic, time.perf_counter() - start, None


def _summary(seconds):
    milliseconds = np.asarray(seconds) * 1000.0
    return float(np.median(milliseconds)), float(np.percentile(milliseconds, 90))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    warmup = _WARMUP.value
    for num_objects in (int(value) for value in _OBJECTS.value):
        clips = make_clips(num_objects, warmup + _CLIPS.value, _HEIGHT.value, _WIDTH.value)
        tf_results = list(run_tf(clips))
        naive_clips = clips[: warmup + _NAIVE_CLIPS.value]
        naive_results = list(run_naive(naive_clips))
        same = all(
            np.array_equal(a[0], b[0]) for a, b in zip(tf_results, naive_results, strict=False)
        )
        tf_median, tf_p90 = _summary([r[1] for r in tf_results[warmup:]])
        naive_median, naive_p90 = _summary([r[1] for r in naive_results[warmup:]])
        decoded = float(np.mean([r[2] for r in tf_results[1:]]))
        objects_per_clip = float(np.mean([clip["num_objects"] for clip in clips]))
        record = {
            "device": device_info.describe_device(),
            "objects": num_objects,
            "objects_per_clip": round(objects_per_clip, 1),
            "memory_decoded_per_clip": round(decoded, 1),
            "frame_size": [_HEIGHT.value, _WIDTH.value],
            "T": T,
            "warmup_clips": warmup,
            "tf_clips": _CLIPS.value,
            "naive_clips": _NAIVE_CLIPS.value,
            "tf_median_ms": round(tf_median, 2),
            "tf_p90_ms": round(tf_p90, 2),
            "naive_median_ms": round(naive_median, 2),
            "naive_p90_ms": round(naive_p90, 2),
            "speedup": round(naive_median / tf_median, 1),
            "same_video_panoptic": bool(same),
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
