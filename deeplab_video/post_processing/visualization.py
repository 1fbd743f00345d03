"""Colours panoptic maps and draws tracked ids over video frames (numpy + OpenCV).

Stuff segments take their class colour from the dataset descriptor; every thing track
gets its own colour, derived from its id so that it stays the same over the video, and a
label "class #id" at its centre.
"""

from typing import NamedTuple

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


class ThingStatistics(NamedTuple):
    """The thing tracks of one panoptic map (a track: a thing class with an id above 0).

    Attributes:
      labels: int64 [K], their panoptic values, ascending.
      areas: int64 [K], pixels.
      centres: float64 [K, 2], the mean (x, y) of their pixels.
      boxes: int64 [K, 4], (x0, y0, x1, y1) on pixel edges: x1, y1 one past the last.
    """

    labels: np.ndarray
    areas: np.ndarray
    centres: np.ndarray
    boxes: np.ndarray


class PanopticLabels(NamedTuple):
    """The distinct values of a panoptic map and each pixel's position among them.

    Attributes:
      values: int64 [L], ascending.
      index: int [height, width], values[index] is the map.
    """

    values: np.ndarray
    index: np.ndarray


def panoptic_labels(panoptic: np.ndarray) -> PanopticLabels:
    """A map's PanopticLabels, from one histogram (no sort over the pixels).

    Args:
        panoptic: int [height, width] (negative values are sorted instead).
    """
    if panoptic.size and panoptic.min() < 0:
        values, index = np.unique(panoptic, return_inverse=True)
        return PanopticLabels(values, index.reshape(panoptic.shape))
    values = np.flatnonzero(np.bincount(panoptic.ravel()))
    position = np.zeros(values[-1] + 1 if values.size else 1, np.int32)
    position[values] = np.arange(values.size)
    return PanopticLabels(values, np.take(position, panoptic))


def _is_track(labels: np.ndarray, descriptor: datasets.DatasetDescriptor) -> np.ndarray:
    """bool [L]: which panoptic values are thing tracks."""
    divisor = descriptor.label_divisor
    return np.isin(labels // divisor, descriptor.thing_ids) & (labels % divisor > 0)


def thing_statistics(
    panoptic: np.ndarray,
    descriptor: datasets.DatasetDescriptor,
    labels: PanopticLabels | None = None,
) -> ThingStatistics:
    """Area, centre and box of every thing track of a panoptic map.

    One histogram finds the tracks; each is then measured from its row and column
    counts (OpenCV compares and reduces in SIMD), with no per-pixel coordinate lists.

    Args:
        panoptic: int32 [height, width] with video-consistent instance ids.
        descriptor: the dataset.
        labels: `panoptic_labels(panoptic)` when the caller has it.
    """
    values = (panoptic_labels(panoptic) if labels is None else labels).values
    labels = values[_is_track(values, descriptor)]
    height, width = panoptic.shape
    areas = np.zeros(labels.size, np.int64)
    centres = np.zeros((labels.size, 2))
    boxes = np.zeros((labels.size, 4), np.int64)
    source = np.ascontiguousarray(panoptic, np.int32)
    for row, label in enumerate(labels.tolist()):
        on = cv2.compare(source, label, cv2.CMP_EQ)  # uint8 255 on the track's pixels
        columns = cv2.reduce(on, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0].astype(np.int64) // 255
        rows = cv2.reduce(on, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0].astype(np.int64) // 255
        areas[row] = columns.sum()
        centres[row] = (columns @ np.arange(width), rows @ np.arange(height))
        centres[row] /= areas[row]
        xs, ys = np.flatnonzero(columns), np.flatnonzero(rows)
        boxes[row] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return ThingStatistics(labels, areas, centres, boxes)


def _colorize(
    labels: PanopticLabels, descriptor: datasets.DatasetDescriptor
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [h, w, 3] colours, bool [h, w] void): class colours, and each thing track's
    colour on its pixels.

    Colours are chosen per distinct value of the map and packed one per uint32, so that
    colouring is one gather per pixel from a table of a few entries.
    """
    labels, index = labels
    semantic = labels // descriptor.label_divisor
    table = descriptor.colormap_array()[np.clip(semantic, 0, 255)]
    track = _is_track(labels, descriptor)
    if track.any():
        table[track] = track_colors(labels[track] % descriptor.label_divisor)
    packed = np.zeros((labels.size, 4), np.uint8)
    packed[:, :3] = table
    colors = np.take(packed.view(np.uint32)[:, 0], index)
    void = np.take(semantic == descriptor.ignore_label, index)
    rgb = cv2.cvtColor(colors.view(np.uint8).reshape(*index.shape, 4), cv2.COLOR_RGBA2RGB)
    return rgb, void


def colorize_panoptic(panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor) -> np.ndarray:
    """Colours one panoptic map.

    Args:
        panoptic: int32 [height, width], semantic * label_divisor + instance.
        descriptor: the dataset (colour map, thing ids, label divisor, ignore label).

    Returns:
        uint8 [height, width, 3] RGB; void pixels black, stuff in class colours, every
        thing instance in its own track colour.
    """
    return _colorize(panoptic_labels(panoptic), descriptor)[0]


def overlay(
    frame: np.ndarray,
    panoptic: np.ndarray,
    descriptor: datasets.DatasetDescriptor,
    things: ThingStatistics | None = None,
    labels: PanopticLabels | None = None,
) -> np.ndarray:
    """Blends the coloured panoptic map over a frame and labels every thing track.

    Args:
        frame: uint8 [height, width, 3] RGB.
        panoptic: int32 [height, width] with video-consistent instance ids.
        descriptor: the dataset.
        things: `thing_statistics(panoptic, descriptor)` when the caller has it.
        labels: `panoptic_labels(panoptic)` when the caller has it.

    Returns:
        uint8 [height, width, 3] RGB frame with segment colours and "class #id" labels.
    """
    if labels is None:
        labels = panoptic_labels(panoptic)
    colors, void = _colorize(labels, descriptor)
    # OpenCV's blend rounds to nearest (within 1 of the exact value), in SIMD.
    blended = cv2.addWeighted(frame, 1.0 - OVERLAY_ALPHA, colors, OVERLAY_ALPHA, 0.0)
    cv2.copyTo(frame, void.view(np.uint8), blended)
    if things is None:
        things = thing_statistics(panoptic, descriptor, labels)
    scale = max(0.35, min(frame.shape[:2]) / 720.0)
    for label, (x, y) in zip(things.labels.tolist(), things.centres, strict=True):
        name = descriptor.class_names[label // descriptor.label_divisor]
        text = f"{name} #{label % descriptor.label_divisor}"
        origin = (int(x), int(y))
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3)
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return blended
