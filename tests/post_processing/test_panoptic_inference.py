"""Tests for deeplab_video.post_processing.panoptic_inference."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.post_processing import panoptic_inference
from deeplab_video.protos import evaluator_pb2

# Classes 0, 1 are stuff, 2, 3 things; class 4 of the logits is void.
DESCRIPTOR = datasets.DatasetDescriptor(
    name="test",
    class_names=("sky", "road", "car", "person"),
    thing_ids=(2, 3),
    label_divisor=100,
    ignore_label=255,
    colormap=((0, 0, 0),) * 4,
)
VOID = 255 * 100
NUM_CLASSES = 4


def _class_logits(rows):
    """Logits whose softmax gives `confidence` to `cls` and spreads the rest evenly."""
    logits = []
    for cls, confidence in rows:
        rest = (1.0 - confidence) / NUM_CLASSES
        probs = np.full([NUM_CLASSES + 1], rest)
        probs[cls] = confidence
        logits.append(np.log(probs))
    return np.asarray(logits, np.float32)


def _options(**kwargs):
    options = evaluator_pb2.PostProcessingOptions(**kwargs)
    return options


def _run(mask_logits, class_logits, options, output_size=None, embeddings=None):
    num_queries = class_logits.shape[0]
    if embeddings is None:
        embeddings = np.arange(num_queries * 3, dtype=np.float32).reshape(num_queries, 3)
    size = output_size or mask_logits.shape[1:3]
    return panoptic_inference.panoptic_inference(
        mask_logits, class_logits, embeddings, size, DESCRIPTOR, options
    )


def _maskwise_reference(mask_logits, class_logits, options):
    """The greedy slot loop of DeepLab2 / Video-kMaX, in numpy, on one clip."""
    shape = mask_logits.shape[:3]
    logits = mask_logits.reshape(-1, mask_logits.shape[-1]).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    class_probs = np.exp(class_logits.astype(np.float64))
    class_probs = (class_probs / class_probs.sum(1, keepdims=True))[:, :-1]
    scores, classes = class_probs.max(1), class_probs.argmax(1)
    binary = probs > options.mask_threshold
    area = binary.sum(0)
    mask_score = np.where(area > 0, (probs * binary).sum(0) / np.maximum(area, 1), 0.0)
    ranking = scores**options.reorder_class_weight * mask_score**options.reorder_mask_weight
    canvas = np.full(probs.shape[0], -1)
    for query in np.argsort(-ranking, kind="stable"):
        thing = classes[query] in DESCRIPTOR.thing_ids
        threshold = options.class_threshold_thing if thing else options.class_threshold_stuff
        limit = options.thing_area_limit if thing else options.stuff_area_limit
        new = binary[:, query] & (canvas < 0)
        if (
            scores[query] >= threshold
            and new.sum() > area[query] * options.overlap_threshold
            and new.sum() >= limit
        ):
            canvas[new] = query
    panoptic = np.full(canvas.shape, VOID)
    local_id = 0
    for query in np.argsort(-ranking, kind="stable"):
        pixels = canvas == query
        if not pixels.any():
            continue
        if classes[query] in DESCRIPTOR.thing_ids:
            local_id += 1
            panoptic[pixels] = classes[query] * 100 + local_id
        else:
            panoptic[pixels] = classes[query] * 100
    return panoptic.reshape(shape)


@pytest.mark.parametrize("num_frames", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
# Thresholds that keep about half of the queries, most of them (their masks are then cut
# from all queries' probabilities) and few of them (their channels are resized alone).
@pytest.mark.parametrize("class_thresholds", [(0.6, 0.4), (0.1, 0.1), (0.9, 0.9)])
def test_maskwise_matches_greedy_slot_loop(num_frames, seed, class_thresholds):
    rng = np.random.default_rng(seed)
    num_queries = 12
    mask_logits = (rng.normal(size=(num_frames, 9, 11, num_queries)) * 3).astype(np.float32)
    class_logits = (rng.normal(size=(num_queries, NUM_CLASSES + 1)) * 3).astype(np.float32)
    options = _options(
        class_threshold_thing=class_thresholds[0],
        class_threshold_stuff=class_thresholds[1],
        mask_threshold=0.35,
        overlap_threshold=0.7,
        thing_area_limit=4,
        stuff_area_limit=6,
        reorder_mask_weight=2.0,
    )
    result = _run(mask_logits, class_logits, options)
    expected = _maskwise_reference(mask_logits, class_logits, options)
    np.testing.assert_array_equal(result.panoptic.numpy(), expected)
    assert result.panoptic.shape == (num_frames, 9, 11)


def _two_thing_clip(thing_confidence, stuff_confidence):
    """Frame of stuff (query 0) with a 2x2 thing (query 1); class confidences given."""
    mask_logits = np.full([1, 4, 4, 2], -10.0, np.float32)
    mask_logits[..., 0] = 10.0
    mask_logits[0, 1:3, 1:3, 1] = 20.0
    class_logits = _class_logits([(0, stuff_confidence), (2, thing_confidence)])
    return mask_logits, class_logits


@pytest.mark.parametrize("mode", ["maskwise", "pixelwise"])
def test_thing_and_stuff_thresholds_both_apply(mode):
    options = _options(mode=mode, class_threshold_thing=0.7, class_threshold_stuff=0.5)
    # Thing at 0.6: above the stuff threshold, below the thing threshold -> dropped.
    result = _run(*_two_thing_clip(thing_confidence=0.6, stuff_confidence=0.9), options)
    panoptic = result.panoptic.numpy()[0]
    assert int(result.num_objects) == 0
    assert (panoptic[1:3, 1:3] == VOID).all()
    assert (panoptic[0] == 0).all()
    # Thing at 0.75 kept; stuff at 0.6 (above 0.5, below the thing threshold) kept.
    result = _run(*_two_thing_clip(thing_confidence=0.75, stuff_confidence=0.6), options)
    panoptic = result.panoptic.numpy()[0]
    assert int(result.num_objects) == 1
    assert (panoptic[1:3, 1:3] == 201).all()
    assert (panoptic[0] == 0).all()
    # Stuff at 0.45, below its threshold -> void.
    result = _run(*_two_thing_clip(thing_confidence=0.75, stuff_confidence=0.45), options)
    assert (result.panoptic.numpy()[0, 0] == VOID).all()


def _overlapping_clip(overlap_pixels):
    """Query 1 (car, 0.9) owns a 1x10 strip; query 2 (person, 0.8) a 1x10 strip that
    shares `overlap_pixels` with it (both probabilities ~0.5 there)."""
    mask_logits = np.full([1, 1, 20, 3], -10.0, np.float32)
    mask_logits[..., 0] = 0.0
    mask_logits[0, 0, 0:10, 1] = 10.0
    start = 10 - overlap_pixels
    mask_logits[0, 0, start : start + 10, 2] = 10.0
    class_logits = _class_logits([(1, 0.3), (2, 0.9), (3, 0.8)])
    return mask_logits, class_logits


def test_overlap_filter():
    options = _options(overlap_threshold=0.8, class_threshold_stuff=0.5)
    # 1 of 10 pixels claimed: 9 > 8 -> kept, on its 9 unclaimed pixels.
    result = _run(*_overlapping_clip(1), options)
    row = result.panoptic.numpy()[0, 0]
    np.testing.assert_array_equal(row[:10], [201] * 10)
    np.testing.assert_array_equal(row[10:19], [302] * 9)
    assert int(result.num_objects) == 2
    # 3 of 10 claimed: 7 <= 8 -> dropped; its pixels become void (stuff is unconfident).
    result = _run(*_overlapping_clip(3), options)
    row = result.panoptic.numpy()[0, 0]
    np.testing.assert_array_equal(row[:10], [201] * 10)
    np.testing.assert_array_equal(row[10:], [VOID] * 10)
    assert int(result.num_objects) == 1


def test_area_limit_drops_small_things_and_frees_their_pixels():
    # A 2x2 car (ranked first by class confidence alone) over a person covering the whole
    # frame; both probabilities are 0.5 on the 2x2 block.
    mask_logits = np.full([1, 4, 4, 2], -10.0, np.float32)
    mask_logits[..., 1] = 10.0
    mask_logits[0, 1:3, 1:3, 0] = 10.0
    class_logits = _class_logits([(2, 0.95), (3, 0.9)])
    options = _options(overlap_threshold=0.5, thing_area_limit=5, reorder_mask_weight=0.0)
    panoptic = _run(mask_logits, class_logits, options).panoptic.numpy()[0]
    # The small car is dropped; the person takes all 16 pixels.
    assert (panoptic == 301).all()
    options = _options(overlap_threshold=0.5, thing_area_limit=4, reorder_mask_weight=0.0)
    panoptic = _run(mask_logits, class_logits, options).panoptic.numpy()[0]
    assert (panoptic[1:3, 1:3] == 201).all()
    assert (panoptic == 302).sum() == 12


def test_pixelwise_mode():
    mask_logits = np.full([1, 2, 3, 3], 0.0, np.float32)
    mask_logits[0, 0, :, 0] = 5.0  # stuff, confident pixels
    mask_logits[0, 1, 0, 1] = 5.0  # thing
    mask_logits[0, 1, 1, 2] = 5.0  # query 2: class-unconfident -> void
    # Best confident query (0) at probability e^0.1 / (e^0.1 + 1) = 0.52 <= 0.6 -> void.
    mask_logits[0, 1, 2, 0] = 0.1
    class_logits = _class_logits([(1, 0.9), (3, 0.9), (2, 0.3)])
    options = _options(mode="pixelwise", pixel_confidence_threshold=0.6)
    result = _run(mask_logits, class_logits, options)
    np.testing.assert_array_equal(result.panoptic.numpy()[0], [[100, 100, 100], [301, VOID, VOID]])
    np.testing.assert_array_equal(result.query_indices.numpy()[:1], [1])


def test_objects_boxes_and_padding_over_two_frames():
    mask_logits = np.full([2, 8, 10, 4], -10.0, np.float32)
    mask_logits[..., 0] = 10.0
    mask_logits[0, 1:3, 2:4, 1] = 20.0  # car: frame 0 rows 1-2, cols 2-3
    mask_logits[1, 4:6, 6:9, 1] = 20.0  # car: frame 1 rows 4-5, cols 6-8
    mask_logits[1, 6:8, 0:2, 2] = 20.0  # person, frame 1 only
    class_logits = _class_logits([(1, 0.9), (2, 0.95), (3, 0.8), (0, 0.1)])
    embeddings = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    result = _run(mask_logits, class_logits, _options(max_objects_per_clip=3), None, embeddings)
    assert int(result.num_objects) == 2
    np.testing.assert_array_equal(result.query_indices.numpy(), [1, 2, -1])
    np.testing.assert_array_equal(result.local_ids.numpy(), [1, 2, 0])
    np.testing.assert_array_equal(result.classes.numpy(), [2, 3, -1])
    np.testing.assert_allclose(result.scores.numpy(), [0.95, 0.8, 0.0], atol=1e-5)
    np.testing.assert_allclose(
        result.boxes.numpy(),
        [[0.2, 1 / 8, 0.9, 6 / 8], [0.0, 6 / 8, 0.2, 1.0], [0, 0, 0, 0]],
        atol=1e-6,
    )
    np.testing.assert_allclose(result.embeddings.numpy()[:2], embeddings[1:3])
    np.testing.assert_array_equal(result.embeddings.numpy()[2], 0.0)
    panoptic = result.panoptic.numpy()
    assert (panoptic[0, 1:3, 2:4] == 201).all() and (panoptic[1, 4:6, 6:9] == 201).all()
    assert (panoptic[1, 6:8, 0:2] == 302).all()
    assert (panoptic == 100).sum() == 2 * 80 - 4 - 6 - 4


def test_things_beyond_capacity_become_void():
    mask_logits = np.full([1, 1, 3, 3], -10.0, np.float32)
    for query in range(3):
        mask_logits[0, 0, query, query] = 10.0
    class_logits = _class_logits([(2, 0.99), (2, 0.9), (3, 0.8)])
    result = _run(mask_logits, class_logits, _options(max_objects_per_clip=2))
    np.testing.assert_array_equal(result.panoptic.numpy()[0, 0], [201, 202, VOID])
    assert int(result.num_objects) == 2


def test_merge_at_stride_4_upsamples_segments():
    rng = np.random.default_rng(3)
    mask_logits = (rng.normal(size=(2, 5, 6, 6)) * 4).astype(np.float32)
    class_logits = (rng.normal(size=(6, NUM_CLASSES + 1)) * 4).astype(np.float32)
    options = _options(
        merge_at_input_resolution=False, class_threshold_thing=0.3, class_threshold_stuff=0.3
    )
    low = _run(mask_logits, class_logits, options).panoptic.numpy()
    high = _run(mask_logits, class_logits, options, output_size=(17, 21)).panoptic.numpy()
    # With aligned corners, input pixel 4 * i sits exactly on stride-4 pixel i.
    np.testing.assert_array_equal(high[:, ::4, ::4], low)
    assert high.shape == (2, 17, 21)


def test_runs_in_tf_function_like_eager():
    rng = np.random.default_rng(4)
    mask_logits = (rng.normal(size=(2, 6, 7, 8)) * 3).astype(np.float32)
    class_logits = (rng.normal(size=(8, NUM_CLASSES + 1)) * 3).astype(np.float32)
    embeddings = rng.normal(size=(8, 4)).astype(np.float32)
    options = _options(class_threshold_thing=0.3, class_threshold_stuff=0.3)

    @tf.function
    def run(m, c, e):
        return panoptic_inference.panoptic_inference(m, c, e, (21, 25), DESCRIPTOR, options)

    graph = run(mask_logits, class_logits, embeddings)
    eager = _run(mask_logits, class_logits, options, (21, 25), embeddings)
    for name in panoptic_inference.ClipPanoptic._fields:
        np.testing.assert_array_equal(getattr(graph, name), getattr(eager, name), err_msg=name)


def test_rejects_bad_options():
    mask_logits, class_logits = _two_thing_clip(0.9, 0.9)
    with pytest.raises(ValueError, match="mode"):
        _run(mask_logits, class_logits, _options(mode="boxwise"))
    with pytest.raises(ValueError, match="overlap_threshold"):
        _run(mask_logits, class_logits, _options(overlap_threshold=1.5))


@pytest.mark.parametrize("in_graph", [False, True])
def test_no_confident_query_is_all_void(in_graph):
    mask_logits = np.zeros([2, 5, 6, 4], np.float32)
    class_logits = np.zeros([4, NUM_CLASSES + 1], np.float32)  # Every score is 0.2.
    options = _options(class_threshold_thing=0.5, class_threshold_stuff=0.5)

    def run(masks, classes):
        return _run(masks, classes, options, (17, 21))

    result = (tf.function(run) if in_graph else run)(mask_logits, class_logits)
    assert (result.panoptic.numpy() == VOID).all()
    assert int(result.num_objects) == 0


def _official_pixelwise_reference(mask_logits, class_logits, options):
    """The official Video-kMaX panoptic_inference_pixel, in numpy float64 (its -9999
    constant included), returning our panoptic encoding of its segments."""
    shape = mask_logits.shape[:3]
    logits = mask_logits.reshape(-1, mask_logits.shape[-1]).astype(np.float64)
    class_probs = np.exp(class_logits.astype(np.float64))
    class_probs = (class_probs / class_probs.sum(1, keepdims=True))[:, :-1]
    scores, classes = class_probs.max(1), class_probs.argmax(1)
    kept = (scores > options.mask_threshold).astype(np.float64)
    masked = logits * kept + -9999.0 * (1.0 - kept)
    soft = np.exp(masked - masked.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    best, best_probability = masked.argmax(1), soft.max(1)
    confident = best_probability > options.class_threshold_thing
    panoptic = np.full(best.shape, VOID)
    # Things numbered by class score (our rank order); the official ids differ only in
    # numbering. Stuff of one class is one segment in both.
    things = [q for q in np.argsort(-scores, kind="stable") if classes[q] in DESCRIPTOR.thing_ids]
    local = {
        query: index + 1
        for index, query in enumerate(q for q in things if (confident & (best == q)).any())
    }
    for query in np.unique(best):
        pixels = confident & (best == query)
        if classes[query] in DESCRIPTOR.thing_ids:
            if pixels.any():
                panoptic[pixels] = classes[query] * 100 + local[query]
        else:
            panoptic[pixels] = classes[query] * 100
    return panoptic.reshape(shape)


@pytest.mark.parametrize("num_frames", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_official_pixelwise_matches_the_official_algorithm(num_frames, seed):
    rng = np.random.default_rng(seed)
    num_queries = 12
    mask_logits = (rng.normal(size=(num_frames, 9, 11, num_queries)) * 3).astype(np.float32)
    class_logits = (rng.normal(size=(num_queries, NUM_CLASSES + 1)) * 3).astype(np.float32)
    # The VIPSeg near-online settings; area limits and the stuff threshold play no part.
    options = _options(
        mode="pixelwise_official",
        mask_threshold=0.3,
        class_threshold_thing=0.5,
        class_threshold_stuff=0.99,
        thing_area_limit=1000,
    )
    result = _run(mask_logits, class_logits, options)
    expected = _official_pixelwise_reference(mask_logits, class_logits, options)
    np.testing.assert_array_equal(result.panoptic.numpy(), expected)


def test_official_pixelwise_with_no_kept_query_is_void():
    mask_logits, class_logits = _two_thing_clip(thing_confidence=0.25, stuff_confidence=0.25)
    options = _options(mode="pixelwise_official", mask_threshold=0.3, class_threshold_thing=0.5)
    result = _run(mask_logits, class_logits, options)
    assert (result.panoptic.numpy() == VOID).all()
    assert int(result.num_objects) == 0


@pytest.mark.parametrize("mode", ["maskwise", "pixelwise", "pixelwise_official"])
def test_padding_takes_no_part_and_the_image_is_resized_back(mode):
    rng = np.random.default_rng(5)
    num_queries = 10
    # Stride-4 logits of a 33 x 41 canvas whose top-left 22 x 30 holds the image.
    mask_logits = (rng.normal(size=(2, 9, 11, num_queries)) * 3).astype(np.float32)
    class_logits = (rng.normal(size=(num_queries, NUM_CLASSES + 1)) * 3).astype(np.float32)
    options = _options(mode=mode, class_threshold_thing=0.3, class_threshold_stuff=0.3)
    embeddings = np.eye(num_queries, 3, dtype=np.float32)
    result = panoptic_inference.panoptic_inference(
        mask_logits,
        class_logits,
        embeddings,
        (18, 24),
        DESCRIPTOR,
        options,
        canvas_size=(33, 41),
        image_size=(22, 30),
    )
    canvas = tf.compat.v1.image.resize_bilinear(mask_logits, (33, 41), align_corners=True)
    image = tf.compat.v1.image.resize_bilinear(canvas[:, :22, :30], (18, 24), align_corners=True)
    expected = panoptic_inference.panoptic_inference(
        image.numpy(), class_logits, embeddings, (18, 24), DESCRIPTOR, options
    )
    assert result.panoptic.shape == (2, 18, 24)
    np.testing.assert_array_equal(result.panoptic.numpy(), expected.panoptic.numpy())
    np.testing.assert_allclose(result.boxes.numpy(), expected.boxes.numpy())


@pytest.mark.parametrize("mode", ["maskwise", "pixelwise_official"])
@pytest.mark.parametrize("output_size", [(22, 30), (18, 24)])
def test_run_time_sizes_give_the_static_result(mode, output_size):
    """Sizes known only at run time (the exported model) crop and resize back alike,
    including when the image is not resized (its size tensors are the output's)."""
    rng = np.random.default_rng(6)
    num_queries = 10
    mask_logits = (rng.normal(size=(2, 9, 11, num_queries)) * 3).astype(np.float32)
    class_logits = (rng.normal(size=(num_queries, NUM_CLASSES + 1)) * 3).astype(np.float32)
    options = _options(mode=mode, class_threshold_thing=0.3, class_threshold_stuff=0.3)
    embeddings = np.eye(num_queries, 3, dtype=np.float32)

    def run(sizes):
        canvas, image, output = sizes
        return panoptic_inference.panoptic_inference(
            mask_logits,
            class_logits,
            embeddings,
            output,
            DESCRIPTOR,
            options,
            canvas_size=canvas,
            image_size=image,
        ).panoptic

    @tf.function(input_signature=[tf.TensorSpec([6], tf.int32)])
    def at_run_time(sides):
        canvas, image = (sides[0], sides[1]), (sides[2], sides[3])
        output = image if output_size == (22, 30) else (sides[4], sides[5])
        return run((canvas, image, output))

    static = run(((33, 41), (22, 30), output_size))
    dynamic = at_run_time(tf.constant([33, 41, 22, 30, *output_size]))
    np.testing.assert_array_equal(dynamic.numpy(), static.numpy())
