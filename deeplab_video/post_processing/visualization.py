"""Colours panoptic maps and draws tracked ids over video frames (numpy + OpenCV).

Stuff segments take their class colour from the dataset descriptor; every thing track
gets its own colour, derived from its id so that it stays the same over the video, and a
label "class #id" at its centre.
"""

import cv2
import numpy as np

from deeplab_video.data import datasets

# Weight of the segmentation colours when blended over the frame.
OVERLAY_ALPHA = 0.55


def track_colors(track_ids: np.ndarray) -> np.ndarray:
    """Deterministic, well-spread colours for track ids.

    Args:
        track_ids: int [num_tracks].

    Returns:
        uint8 [num_tracks, 3] RGB colours (golden-ratio hue steps, full saturation).
    """
    hues = (np.asarray(track_ids, np.float64) * 0.618033988749895) % 1.0
    hsv = np.stack(
        [hues * 179.0, np.full_like(hues, 220.0), np.full_like(hues, 255.0)], axis=-1
    ).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def colorize_panoptic(panoptic: np.ndarray, descriptor: datasets.DatasetDescriptor) -> np.ndarray:
    """Colours one panoptic map.

    Args:
        panoptic: int32 [height, width], semantic * label_divisor + instance.
        descriptor: the dataset (colour map, thing ids, label divisor, ignore label).

    Returns:
        uint8 [height, width, 3] RGB; void pixels black, stuff in class colours, every
        thing instance in its own track colour.
    """
    semantic = panoptic // descriptor.label_divisor
    instance = panoptic % descriptor.label_divisor
    image = descriptor.colormap_array()[np.clip(semantic, 0, 255)]
    thing = np.isin(semantic, descriptor.thing_ids) & (instance > 0)
    if thing.any():
        labels, inverse = np.unique(panoptic[thing], return_inverse=True)
        image[thing] = track_colors(labels % descriptor.label_divisor)[inverse]
    return image


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
    colors = colorize_panoptic(panoptic, descriptor)
    valid = (panoptic // descriptor.label_divisor) != descriptor.ignore_label
    blended = frame.copy()
    mixed = frame.astype(np.float32) * (1 - OVERLAY_ALPHA) + colors * OVERLAY_ALPHA
    blended[valid] = mixed[valid].astype(np.uint8)
    semantic = panoptic // descriptor.label_divisor
    instance = panoptic % descriptor.label_divisor
    thing = np.isin(semantic, descriptor.thing_ids) & (instance > 0)
    if not thing.any():
        return blended
    labels, inverse = np.unique(panoptic[thing], return_inverse=True)
    ys, xs = np.nonzero(thing)
    counts = np.bincount(inverse, minlength=len(labels))
    centre_x = np.bincount(inverse, weights=xs, minlength=len(labels)) / counts
    centre_y = np.bincount(inverse, weights=ys, minlength=len(labels)) / counts
    scale = max(0.35, min(frame.shape[:2]) / 720.0)
    for label, x, y in zip(labels, centre_x, centre_y, strict=True):
        name = descriptor.class_names[label // descriptor.label_divisor]
        text = f"{name} #{label % descriptor.label_divisor}"
        origin = (int(x), int(y))
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3)
        cv2.putText(blended, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return blended
