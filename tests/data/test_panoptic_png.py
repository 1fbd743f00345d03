"""Tests for deeplab_video.data.panoptic_png (KITTI-STEP's R / G*256+B encoding)."""

import cv2
import numpy as np
import pytest

from deeplab_video.data import panoptic_png


def test_round_trip_and_channel_layout(tmp_path):
    panoptic = np.array([[13 * 1000 + 300, 11 * 1000 + 1], [255 * 1000, 0]], np.int32)
    path = tmp_path / "0000" / "000000.png"
    panoptic_png.write(path, panoptic, 1000)
    np.testing.assert_array_equal(panoptic_png.read(path, 1000), panoptic)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    # Pixel (0, 0): semantic 13, instance 300 = 1 * 256 + 44; stored as B, G, R.
    np.testing.assert_array_equal(bgr[0, 0], (44, 1, 13))


def test_rejects_values_that_do_not_fit(tmp_path):
    with pytest.raises(panoptic_png.PanopticPngError, match="instance ids"):
        panoptic_png.encode(np.array([[70000]]), 100000)
    with pytest.raises(panoptic_png.PanopticPngError, match="semantic ids"):
        panoptic_png.encode(np.array([[300 * 1000]]), 1000)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.zeros((4, 4), np.uint8))
    with pytest.raises(panoptic_png.PanopticPngError, match="gray.png"):
        panoptic_png.read(gray, 1000)
    with pytest.raises(panoptic_png.PanopticPngError, match="missing"):
        panoptic_png.read(tmp_path / "missing.png", 1000)
