"""Colours panoptic maps and draws tracked ids over video frames (numpy + OpenCV).

Stuff segments take their class colour from the dataset descriptor; every thing track
gets its own colour, derived from its id so that it stays the same over the video, and a
label "class #id" at its centre.
"""

import cv2
import numpy as np

from deeplab_video import datasets

# Weight of the segmentation colours when blended over the frame.
OVERLAY_ALPHA = 0.55
# OpenCV converts colours in SIMD blocks and rounds a shorter tail slightly differently;
# converting whole blocks gives every track id the same colour in any batch of ids.
_COLOR_BLOCK = 64


def track_colors(track_ids: np.ndarray) -> np.ndarray:
    """Deterministic, well-spread colours for track ids.

    Args:
        track_ids: int [num_tracks].

    Returns:
        uint8 [num_tracks, 3] RGB colours (golden-ratio hue steps, full saturation); an
        id's colour does not depend on the other ids converted with it.
    """
    ids = np.asarray(track_ids, np.float64).reshape(-1)
    padded = np.zeros(-(-max(ids.size, 1) // _COLOR_BLOCK) * _COLOR_BLOCK)
    padded[: ids.size] = ids
    hues = (padded * 0.618033988749895) % 1.0
    hsv = np.stack(
        [hues * 179.0, np.full_like(hues, 220.0), np.full_like(hues, 255.0)], axis=-1
    ).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0, : ids.size]


def _split(panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor):
    """(semantic, instance, thing): int [h, w] ids and bool [h, w] tracked-thing pixels."""
    semantic = panoptic // descriptor.label_divisor
    instance = panoptic - semantic * descriptor.label_divisor
    thing = np.isin(semantic, descriptor.thing_ids) & (instance > 0)
    return semantic, instance, thing


def _colorize(semantic, instance, thing, descriptor) -> np.ndarray:
    """uint8 [h, w, 3]: class colours, and each thing track's colour on its pixels.

    The colour table is packed one colour per uint32, so that colouring is one gather per
    pixel rather than one per channel.
    """
    index = np.clip(semantic, 0, 255)
    table = descriptor.colormap_array()
    if thing.any():
        # A track's colour depends on its id only: one table row per id up to the largest.
        tracks = track_colors(np.arange(instance[thing].max() + 1))
        index = np.where(thing, len(table) + instance, index)
        table = np.concatenate([table, tracks])
    packed = np.zeros((len(table), 4), np.uint8)
    packed[:, :3] = table
    colors = packed.view(np.uint32)[:, 0][index]
    return cv2.cvtColor(colors.view(np.uint8).reshape(*index.shape, 4), cv2.COLOR_RGBA2RGB)


def colorize_panoptic(panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor) -> np.ndarray:
    """Colours one panoptic map.

    Args:
        panoptic: int32 [height, width], semantic * label_divisor + instance.
        descriptor: the dataset (colour map, thing ids, label divisor, ignore label).

    Returns:
        uint8 [height, width, 3] RGB; void pixels black, stuff in class colours, every
        thing instance in its own track colour.
    """
    return _colorize(*_split(panoptic, descriptor), descriptor)


def overlay(
    frame: np.ndarray, panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor
) -> np.ndarray:
    """Blends the coloured panoptic map over a frame and labels every thing track.

    Args:
        frame: uint8 [height, width, 3] RGB.
        panoptic: int32 [height, width] with video-consistent instance ids.
        descriptor: the dataset.

    Returns:
        uint8 [height, width, 3] RGB frame with segment colours and "class #id" labels.
    """
    semantic, instance, thing = _split(panoptic, descriptor)
    colors = _colorize(semantic, instance, thing, descriptor)
    # OpenCV's blend rounds to nearest (within 1 of the exact value), in SIMD.
    blended = cv2.addWeighted(frame, 1.0 - OVERLAY_ALPHA, colors, OVERLAY_ALPHA, 0.0)
    void = (semantic == descriptor.ignore_label).view(np.uint8)
    cv2.copyTo(frame, void, blended)
    if not thing.any():
        return blended
    ys, xs = np.nonzero(thing)
    values = panoptic[ys, xs]
    counts = np.bincount(values)
    labels = np.flatnonzero(counts)
    counts = counts[labels]
    centre_x = np.bincount(values, weights=xs)[labels] / counts
    centre_y = np.bincount(values, weights=ys)[labels] / counts
    scale = max(0.35, min(frame.shape[:2]) / 720.0)
    for label, x, y in zip(labels, centre_x, centre_y, strict=True):
        name = descriptor.class_names[label // descriptor.label_divisor]
        text = f"{name} #{label % descriptor.label_divisor}"
        origin = (int(x), int(y))
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3)
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return blended
