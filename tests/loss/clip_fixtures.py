"""Tiny clip inputs for the loss tests: B=2 clips of T=2 frames, 5x4 pixels, 3 tube slots.

Clip 0: tubes 0 and 1 are real, tube 1 is absent from frame 1, slot 2 is padding.
Clip 1: three real tubes, two of the same class; tube 2 is absent from frame 0.
Both clips have void pixels; clip 0 has a crowd pixel (void, but with a semantic label).
"""

import numpy as np
import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import tube_matching
from tests.loss import numpy_reference

BATCH, FRAMES, HEIGHT, WIDTH = 2, 2, 5, 4
NUM_QUERIES, NUM_TUBES, NUM_CLASSES, CHANNELS = 5, 3, 4, 6
IGNORE_LABEL = 255


def _tube_ids(rng: np.random.Generator, allowed: list[list[int]]) -> np.ndarray:
    """Random tube id per pixel ([FRAMES, HEIGHT, WIDTH], -1 = void) from allowed ids."""
    ids = np.empty((FRAMES, HEIGHT, WIDTH), np.int64)
    for frame, frame_ids in enumerate(allowed):
        ids[frame] = rng.choice(frame_ids + [-1], size=(HEIGHT, WIDTH))
        for position, tube in enumerate(frame_ids):  # every allowed tube is present
            ids[frame, position, 0] = tube
    return ids


def make_targets(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.stack([_tube_ids(rng, [[0, 1], [0]]), _tube_ids(rng, [[0, 1], [0, 1, 2]])])
    classes = np.array([[1, 3, 0], [2, 2, 0]], np.int32)
    valid = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    masks = np.stack([ids == tube for tube in range(NUM_TUBES)], axis=-1).astype(np.float32)
    void = (ids < 0).astype(np.float32)
    semantic = np.full(ids.shape, IGNORE_LABEL, np.int32)
    for b in range(BATCH):
        for tube in range(NUM_TUBES):
            semantic[b][ids[b] == tube] = classes[b, tube]
    # A crowd pixel: void for the mask losses, yet labelled for the semantic loss.
    ids[0, 0, HEIGHT - 1, WIDTH - 1] = -1
    masks[0, 0, HEIGHT - 1, WIDTH - 1] = 0.0
    void[0, 0, HEIGHT - 1, WIDTH - 1] = 1.0
    semantic[0, 0, HEIGHT - 1, WIDTH - 1] = 3
    return {
        common.TUBE_MASKS: masks,
        common.TUBE_CLASSES: classes,
        common.TUBE_VALID: valid,
        common.VOID_MASK: void,
        common.SEMANTIC_STRIDED: semantic,
    }


def make_predictions(seed: int = 1, scale: float = 2.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(BATCH, FRAMES, HEIGHT, WIDTH, CHANNELS))
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    return {
        common.PRED_MASK_LOGITS: scale
        * rng.normal(size=(BATCH, FRAMES, HEIGHT, WIDTH, NUM_QUERIES)).astype(np.float32),
        common.PRED_CLASS_LOGITS: scale
        * rng.normal(size=(BATCH, NUM_QUERIES, NUM_CLASSES + 1)).astype(np.float32),
        common.PRED_PIXEL_FEATURES: features.astype(np.float32),
        common.PRED_SEMANTIC_LOGITS: rng.normal(
            size=(BATCH, FRAMES, HEIGHT, WIDTH, NUM_CLASSES)
        ).astype(np.float32),
    }


def make_perfect_predictions(targets: dict[str, np.ndarray], confidence: float = 30.0):
    """Logits that reproduce the targets: tube g is predicted by query g + 1."""
    masks = targets[common.TUBE_MASKS] * targets[common.TUBE_VALID][:, None, None, None, :]
    mask_logits = np.full((BATCH, FRAMES, HEIGHT, WIDTH, NUM_QUERIES), -confidence, np.float32)
    mask_logits[..., 1 : NUM_TUBES + 1] = confidence * (2 * masks - 1)
    class_logits = np.full((BATCH, NUM_QUERIES, NUM_CLASSES + 1), -confidence, np.float32)
    class_logits[:, :, NUM_CLASSES] = confidence
    for b in range(BATCH):
        for tube in range(NUM_TUBES):
            if targets[common.TUBE_VALID][b, tube] > 0:
                class_logits[b, tube + 1, :] = -confidence
                class_logits[b, tube + 1, targets[common.TUBE_CLASSES][b, tube]] = confidence
    return {common.PRED_MASK_LOGITS: mask_logits, common.PRED_CLASS_LOGITS: class_logits}


def flat_targets(targets: dict[str, np.ndarray]) -> tube_matching.ClipTargets:
    """The TF ClipTargets of numpy targets."""
    return tube_matching.prepare_targets(
        tf.constant(targets[common.TUBE_MASKS]),
        tf.constant(targets[common.TUBE_CLASSES]),
        tf.constant(targets[common.TUBE_VALID]),
        tf.constant(targets[common.VOID_MASK]),
    )


def reference_clip(targets: dict[str, np.ndarray], batch_index: int):
    """numpy_reference.clean_targets of one clip: (gt [P, G], real [G], pixel_valid [P])."""
    return numpy_reference.clean_targets(
        targets[common.TUBE_MASKS][batch_index],
        targets[common.TUBE_VALID][batch_index],
        targets[common.VOID_MASK][batch_index],
    )
