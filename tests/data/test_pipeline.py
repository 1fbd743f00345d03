"""Tests for deeplab_video.data.pipeline: clip grouping, element contract, eval padding."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import common
from deeplab_video.data import pipeline, synthetic, tfrecord
from deeplab_video.protos import dataset_pb2
from tests import conftest

CROP = (33, 65)
VOID = 255 * 1000
CONFIG = synthetic.SyntheticConfig(
    num_train_sequences=4,
    num_val_sequences=4,
    min_frames=5,
    max_frames=5,
    height=30,
    width=60,
    num_train_shards=2,
    num_val_shards=2,
    write_pngs=False,
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return synthetic.ensure_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", CONFIG)


def _options(pattern: str, clip_length: int, **kwargs) -> dataset_pb2.DatasetOptions:
    fields = {"batch_size": 2, "max_tubes_per_clip": 16, "shuffle_buffer_size": 8, **kwargs}
    options = dataset_pb2.DatasetOptions(
        dataset="synthetic",
        file_pattern=[pattern],
        crop_size=CROP,
        clip_length=clip_length,
        **fields,
    )
    options.augmentations.min_scale_factor = 0.5
    options.augmentations.max_scale_factor = 2.0
    options.augmentations.scale_factor_step_size = 0.25
    return options


def _frames(spec: list[tuple[str, int]]) -> list[pipeline.FrameRecord]:
    return [pipeline.FrameRecord(s, i, f"{s}/{i}".encode(), "file") for s, i in spec]


def _ids(clips) -> list[list[str]]:
    return [[frame.record.decode() for frame in clip] for clip in clips]


def test_training_clips_take_every_start_and_never_cross_sequences():
    frames = _frames([("a", 0), ("a", 1), ("a", 2), ("b", 7), ("b", 9), ("c", 0)])
    clips = _ids(pipeline.iter_clips(frames, clip_length=2))
    assert clips == [["a/0", "a/1"], ["a/1", "a/2"], ["b/7", "b/9"]]  # "c" is too short
    stepped = _ids(
        pipeline.iter_clips(_frames([("a", i) for i in range(5)]), clip_length=2, frame_step=2)
    )
    assert stepped == [["a/0", "a/2"], ["a/1", "a/3"], ["a/2", "a/4"]]
    single = _ids(pipeline.iter_clips(frames, clip_length=1))
    assert single == [[f.record.decode()] for f in frames]


def test_windows_hold_the_records_within_range_of_each_reference():
    frames = _frames([("a", i) for i in range(7)] + [("b", 3), ("b", 8), ("c", 0)])
    windows = [
        ([f.record.decode() for f in window], reference)
        for window, reference in pipeline.iter_windows(frames, clip_length=2, radius=2)
    ]
    a = [f"a/{i}" for i in range(7)]
    assert windows == [
        (a[0:3], 0),
        (a[0:4], 1),
        (a[0:5], 2),
        (a[1:6], 2),
        (a[2:7], 2),
        (a[3:7], 2),
        (a[4:7], 2),
        (["b/3", "b/8"], 0),
        (["b/3", "b/8"], 1),
    ]  # "c" is shorter than a clip
    with pytest.raises(ValueError, match="at least clip_length - 1 = 2"):
        next(pipeline.iter_windows(frames, clip_length=3, radius=1))


@pytest.mark.parametrize("num_records, reference", [(11, 5), (6, 0), (4, 3), (3, 1)])
def test_sampled_frames_are_distinct_sorted_and_hold_the_reference(num_records, reference):
    drawn = set()
    for seed in range(30):
        positions = pipeline.sample_clip_frames(
            tf.constant(num_records), tf.constant(reference), 3, tf.constant([seed, 1])
        ).numpy()
        assert reference in positions
        assert np.all(np.diff(positions) > 0)
        assert positions.min() >= 0 and positions.max() < num_records
        drawn.update(positions.tolist())
    assert drawn == set(range(num_records))  # every record of the window can be drawn


@pytest.mark.parametrize(
    "length, clip_length, stride, starts",
    [
        (5, 2, 1, [0, 1, 2, 3]),
        (5, 3, 2, [0, 2]),
        (6, 3, 2, [0, 2, 3]),  # the last clip starts at length - T
        (3, 3, 2, [0]),
        (2, 3, 2, []),
        (7, 1, 1, [0, 1, 2, 3, 4, 5, 6]),
        (7, 2, 3, [0, 3, 5]),
    ],
)
def test_eval_clips_have_t_frames_and_reach_the_end(length, clip_length, stride, starts):
    frames = _frames([("s", i) for i in range(length)] + [("t", i) for i in range(length)])
    clips = _ids(
        pipeline.iter_clips(frames, clip_length=clip_length, stride=stride, cover_end=True)
    )
    want = [[f"{seq}/{start + k}" for k in range(clip_length)] for seq in "st" for start in starts]
    assert clips == want


def test_stream_order_errors_name_the_file():
    scattered = _frames([("a", 0), ("b", 0), ("a", 1)])
    with pytest.raises(tfrecord.CorruptRecordError, match="file: sequence 'a' reappears"):
        list(pipeline.iter_clips(scattered, clip_length=1))
    backwards = _frames([("a", 3), ("a", 2)])
    with pytest.raises(tfrecord.CorruptRecordError, match="frame 2 of sequence 'a'"):
        list(pipeline.iter_clips(backwards, clip_length=1))


@pytest.mark.parametrize("clip_length", [1, 2])
@pytest.mark.parametrize("is_training", [True, False])
def test_element_keys_dtypes_and_shapes(dataset_dir, clip_length, is_training):
    split = "train" if is_training else "val"
    options = _options(f"{dataset_dir}/{split}-*.tfrecord", clip_length)
    dataset = pipeline.build_clip_dataset(options, is_training)
    batch = 2 if is_training else None
    t, (h, w), (sh, sw), n = clip_length, CROP, (9, 17), 16
    want = {
        common.IMAGE: (tf.float32, [batch, t, h, w, 3]),
        common.PANOPTIC: (tf.int32, [batch, t, h, w]),
        common.SEMANTIC: (tf.int32, [batch, t, h, w]),
        common.SEQUENCE_ID: (tf.string, [batch]),
        common.FRAME_INDEX: (tf.int32, [batch, t]),
        common.ORIGINAL_SIZE: (tf.int32, [batch, 2]),
        common.TUBE_MASKS: (tf.float32, [batch, t, sh, sw, n]),
        common.TUBE_CLASSES: (tf.int32, [batch, n]),
        common.TUBE_VALID: (tf.float32, [batch, n]),
        common.VOID_MASK: (tf.float32, [batch, t, sh, sw]),
        common.SEMANTIC_STRIDED: (tf.int32, [batch, t, sh, sw]),
    }
    spec = dataset.element_spec
    assert set(spec) == set(want)
    for key, (dtype, shape) in want.items():
        assert spec[key].dtype == dtype, key
        assert spec[key].shape.as_list() == shape, key
    element = next(iter(dataset))
    image = element[common.IMAGE].numpy()
    assert 0 <= image.min() and image.max() <= 255
    np.testing.assert_array_equal(element[common.SEMANTIC], element[common.PANOPTIC] // 1000)
    np.testing.assert_array_equal(element[common.ORIGINAL_SIZE], [[30, 60]] * 2)
    np.testing.assert_array_equal(
        element[common.SEMANTIC_STRIDED], element[common.SEMANTIC][:, :, ::4, ::4]
    )
    # Every strided pixel is in exactly one tube or void.
    coverage = element[common.TUBE_MASKS].numpy().sum(-1) + element[common.VOID_MASK].numpy()
    np.testing.assert_array_equal(coverage, np.ones_like(coverage))
    frame_steps = np.diff(element[common.FRAME_INDEX].numpy(), axis=1)
    assert np.all(frame_steps == 1)


def test_eval_pads_with_void_and_plays_sequences_in_order(dataset_dir):
    options = _options(f"{dataset_dir}/val-*.tfrecord", clip_length=2)
    sequences = {s.sequence_id: s for s in synthetic.generate_split(CONFIG, "val")}
    seen = []
    for element in pipeline.build_clip_dataset(options, is_training=False):
        for b, sequence_id in enumerate(element[common.SEQUENCE_ID].numpy()):
            sequence = sequences[sequence_id.decode()]
            indices = element[common.FRAME_INDEX][b].numpy()
            seen.append((sequence_id.decode(), *indices))
            panoptic = element[common.PANOPTIC][b].numpy()
            image = element[common.IMAGE][b].numpy()
            np.testing.assert_array_equal(panoptic[:, :30, :60], sequence.panoptic[indices])
            np.testing.assert_array_equal(image[:, :30, :60], sequence.images[indices])
            assert np.all(panoptic[:, 30:] == VOID) and np.all(panoptic[:, :, 60:] == VOID)
            assert np.all(image[:, 30:] == 127.5) and np.all(image[:, :, 60:] == 127.5)
            assert np.all(element[common.VOID_MASK][b].numpy()[:, 8:] == 1)  # rows 32 = 30 + 2
    # Shards hold sequences 0, 2 and 1, 3; each is played whole, in order, stride T - 1.
    want = [(s, i, i + 1) for s in ("0000", "0002", "0001", "0003") for i in range(4)]
    assert seen == want


def _write_repeated_frames(path, sequences: dict[str, int], rng, frame_gap: int = 1) -> None:
    """Each sequence repeats one random frame under frame ids 10, 10 + gap, ..."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for sequence_id, length in sequences.items():
            image = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)
            panoptic = rng.choice([1000, 4001, 3002, 255000], (30, 60)).astype(np.int32)
            for index in range(length):
                frame_index = 10 + frame_gap * index
                writer.write(tfrecord.encode_frame(image, panoptic, sequence_id, frame_index))


def test_training_augments_all_frames_alike_and_never_mixes_sequences(tmp_path):
    rng = np.random.default_rng(0)
    _write_repeated_frames(tmp_path / "train-0.tfrecord", {"a": 6, "b": 3, "c": 1}, rng)
    _write_repeated_frames(tmp_path / "train-1.tfrecord", {"d": 4}, rng)
    options = _options(str(tmp_path / "train-*.tfrecord"), clip_length=3, repeat=False)
    options.augmentations.flip_probability = 0.5
    count = 0
    for element in pipeline.build_clip_dataset(options, is_training=True):
        for key in (common.IMAGE, common.PANOPTIC, common.TUBE_MASKS):
            value = element[key].numpy()
            for t in (1, 2):
                np.testing.assert_array_equal(value[:, t], value[:, 0], err_msg=key)
        frames = element[common.FRAME_INDEX].numpy()
        np.testing.assert_array_equal(frames - frames[:, :1], [[0, 1, 2]] * 2)
        count += 2
    assert count == 6  # a: 4 clips, b: 1, d: 2, c: none; 7 clips -> 3 full batches


def test_frame_sampling_range_draws_records_around_each_reference(tmp_path):
    rng = np.random.default_rng(1)
    lengths = {"a": 9, "b": 2, "c": 1}
    _write_repeated_frames(tmp_path / "train-0.tfrecord", lengths, rng, frame_gap=3)
    options = _options(str(tmp_path / "train-*.tfrecord"), clip_length=2, deterministic=True)
    options.batch_size = 1
    options.augmentations.frame_sampling_range = 2

    def epochs():  # one clip per record of a and b; c is shorter than a clip
        dataset = pipeline.build_clip_dataset(options, is_training=True).take(2 * 11)
        clips = [
            (e[common.SEQUENCE_ID][0].numpy().decode(), tuple(e[common.FRAME_INDEX][0].numpy()))
            for e in dataset
        ]
        return sorted(clips[:11]), sorted(clips[11:])

    first, second = epochs()
    assert epochs() == (first, second)  # seeded
    assert first != second  # new draws every epoch
    gaps = []
    for sequence_id, frames in first + second:
        records = (np.array(frames) - 10) // 3
        assert np.all((np.array(frames) - 10) % 3 == 0)  # real records of the sequence
        assert records.min() >= 0 and records.max() < lengths[sequence_id]
        gaps.append(int(np.diff(records)[0]))
    assert set(gaps) == {1, 2}  # the other frame is at most 2 records from the reference
    assert sorted({s for s, _ in first}) == ["a", "b"]


def test_copy_paste_in_the_stream_keeps_clips_consistent(tmp_path):
    rng = np.random.default_rng(2)
    _write_repeated_frames(tmp_path / "train-0.tfrecord", {"a": 4, "b": 3}, rng)
    _write_repeated_frames(tmp_path / "train-1.tfrecord", {"d": 4}, rng)
    options = _options(
        str(tmp_path / "train-*.tfrecord"), clip_length=2, repeat=False, deterministic=True
    )
    plain = list(pipeline.build_clip_dataset(options, is_training=True))
    options.augmentations.copy_paste_probability = 1.0
    pasted = list(pipeline.build_clip_dataset(options, is_training=True))
    assert len(plain) == len(pasted) == 4  # a: 3 clips, b: 2, d: 3
    changed = 0
    for before, after in zip(plain, pasted, strict=True):
        for key in (common.SEQUENCE_ID, common.FRAME_INDEX, common.ORIGINAL_SIZE):
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
        # Both frames of a clip repeat one frame, and so do the donor's: they stay equal.
        for key in (common.IMAGE, common.PANOPTIC, common.TUBE_MASKS, common.VOID_MASK):
            value = after[key].numpy()
            np.testing.assert_array_equal(value[:, 1], value[:, 0], err_msg=key)
        for b in range(2):
            old = set(before[common.PANOPTIC][b].numpy().ravel().tolist())
            new = set(after[common.PANOPTIC][b].numpy().ravel().tolist())
            largest = max(label % 1000 for label in old if label != 255000)
            fresh = [label for label in new - old if label // 1000 in (3, 4)]
            assert all(label % 1000 > largest for label in fresh)
            changed += bool(new != old)
    assert changed > 0


def test_color_jitter_changes_only_the_images(dataset_dir):
    options = _options(f"{dataset_dir}/train-*.tfrecord", 2, deterministic=True, seed=5)
    plain = _first_batches(options)
    options.augmentations.color_jitter.brightness_delta = 32
    options.augmentations.color_jitter.probability = 1.0
    jittered = _first_batches(options)
    for a, b in zip(plain, jittered, strict=True):
        for key in a:
            if key == common.IMAGE:
                assert not np.allclose(a[key], b[key])
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _first_batches(options, count=2):
    return [
        {k: v.numpy() for k, v in e.items()}
        for e in pipeline.build_clip_dataset(options, True).take(count)
    ]


def test_deterministic_mode_repeats_itself(dataset_dir):
    options = _options(f"{dataset_dir}/train-*.tfrecord", 2, deterministic=True, seed=3)
    first, second = _first_batches(options), _first_batches(options)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    options.seed = 4
    other = _first_batches(options)
    assert any(
        not np.array_equal(a[common.IMAGE], b[common.IMAGE])
        for a, b in zip(first, other, strict=True)
    )


def test_input_context_splits_clips_and_batch(dataset_dir):
    options = _options(f"{dataset_dir}/val-*.tfrecord", 1, batch_size=4)

    def clips(pipeline_id):
        context = tf.distribute.InputContext(2, pipeline_id, num_replicas_in_sync=2)
        dataset = pipeline.build_clip_dataset(options, False, context)
        keys = []
        for element in dataset:
            assert element[common.IMAGE].shape[0] <= 2
            keys += zip(
                element[common.SEQUENCE_ID].numpy(),
                element[common.FRAME_INDEX][:, 0].numpy(),
                strict=True,
            )
        return keys

    first, second = clips(0), clips(1)
    assert len(first) == len(second) == 10
    assert len(set(first) | set(second)) == 20


def test_corrupt_shard_error_names_the_shard(dataset_dir, tmp_path):
    for split, is_training in (("train", True), ("val", False)):
        for name in (f"{split}-00000-of-00002.tfrecord", f"{split}-00001-of-00002.tfrecord"):
            shutil.copy(f"{dataset_dir}/{name}", tmp_path / name)
        broken = tmp_path / f"{split}-00001-of-00002.tfrecord"
        data = bytearray(broken.read_bytes())
        data[len(data) // 3] ^= 0x55
        broken.write_bytes(bytes(data))
        dataset = pipeline.build_clip_dataset(
            _options(str(tmp_path / f"{split}-*.tfrecord"), 2, repeat=False), is_training
        )
        with pytest.raises(tf.errors.OpError, match=f"{split}-00001-of-00002.tfrecord"):
            for _ in dataset:
                pass


def test_missing_files_and_bad_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord file matches"):
        pipeline.build_clip_dataset(_options(str(tmp_path / "none-*"), 1), False)
    options = _options(str(tmp_path / "none-*"), 1)
    del options.crop_size[:]
    with pytest.raises(ValueError, match="crop_size"):
        pipeline.build_clip_dataset(options, False)


_EXIT_SCRIPT = """
import sys, time
from deeplab_video.data import pipeline
from deeplab_video.protos import dataset_pb2

read = pipeline.iter_frames


def slow_frames(paths):  # keeps a prefetch thread inside the generator at exit
    for frame in read(paths):
        time.sleep(0.05)
        yield frame


pipeline.iter_frames = slow_frames
options = dataset_pb2.DatasetOptions(
    dataset="synthetic", file_pattern=[sys.argv[1]], crop_size=[33, 65], clip_length=2,
    batch_size=2, shuffle_buffer_size=2,
)


class Trainer:  # holds its iterator in a reference cycle, as orbit's trainer does
    def __init__(self):
        self.me = self
        self.iterator = iter(pipeline.build_clip_dataset(options, is_training=True))


next(Trainer().iterator)
print("last step done", flush=True)
"""


@pytest.mark.slow
def test_process_exits_with_an_iterator_left_in_a_reference_cycle(dataset_dir, tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_SCRIPT)
    command = [sys.executable, str(script), os.path.join(dataset_dir, "train-*.tfrecord")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(conftest.REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "last step done" in result.stdout
    assert "GeneratorDataset" not in result.stderr
