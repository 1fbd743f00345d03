"""Tests of deeplab_video.evaluation.evaluate_lib (folder scoring) and the PNG reader."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab_video import datasets
from deeplab_video.evaluation import evaluate_lib, label_io, pq, stq, vpq
from tests.evaluation import reference_metrics

KITTI = datasets.KITTI_STEP
THINGS = list(KITTI.thing_ids)


def _write_png(path: pathlib.Path, image: np.ndarray) -> None:
    """Writes an RGB uint8 or one-channel uint16 PNG with TensorFlow (independent of cv2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 2:
        image = image[..., None]
    tf.io.write_file(str(path), tf.io.encode_png(tf.constant(image)))


def _kitti_rgb(panoptic: np.ndarray) -> np.ndarray:
    """KITTI-STEP RGB: R = class (255 void), G * 256 + B = instance."""
    semantic, instance = np.divmod(panoptic, KITTI.label_divisor)
    return np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)


def write_kitti_folders(root: pathlib.Path, seed: int = 0) -> dict:
    """Two sequences of small random frames under root/gt and root/pred."""
    rng = np.random.default_rng(seed)
    videos = {}
    for sequence, num_frames in (("0002", 4), ("0011", 3)):
        gts, preds = reference_metrics.random_video(
            rng, num_frames, 12, 20, KITTI.num_classes, THINGS, 255, KITTI.label_divisor
        )
        videos[sequence] = list(zip(gts, preds, strict=True))
        for t, (gt, pred) in enumerate(videos[sequence]):
            _write_png(root / "gt" / sequence / f"{t:06d}.png", _kitti_rgb(gt))
            _write_png(root / "pred" / sequence / f"{t:06d}.png", _kitti_rgb(pred))
    return videos


def test_kitti_step_folders_give_the_metrics_of_the_arrays(tmp_path):
    videos = write_kitti_folders(tmp_path)
    results = evaluate_lib.evaluate_folders(
        str(tmp_path / "gt"), str(tmp_path / "pred"), KITTI, "kitti_step", (1, 2)
    )
    args = (KITTI.num_classes, THINGS, 255, KITTI.label_divisor)
    stq_metric = stq.STQuality(*args, 2**16 * KITTI.label_divisor)
    vpq_metric = vpq.VideoPanopticQuality(*args, window_sizes=(1, 2))
    pq_metric = pq.PanopticQuality(*args)
    for sequence, frames in videos.items():
        for gt, pred in frames:
            stq_metric.update_state(gt, pred, sequence)
            vpq_metric.update_state(gt, pred, sequence)
            pq_metric.update_state(gt, pred)
    assert (results["num_sequences"], results["num_frames"]) == (2, 7)
    assert results["STQ"] == stq_metric.result()["STQ"]
    assert results["AQ"] == stq_metric.result()["AQ"]
    assert results["VPQ_window2"] == vpq_metric.result()["VPQ_window2"]
    assert results["PQ"] == pq_metric.result()["PQ"]
    assert [s["sequence"] for s in results["per_sequence"]] == ["0002", "0011"]
    car = next(c for c in results["per_class"] if c["name"] == "car")
    assert car["is_thing"] and car["VPQ_window1"] == pytest.approx(car["PQ"])


def test_vipseg_png_decoding(tmp_path):
    # VIPSeg panomasks: 0 void, 1..124 stuff class + 1, else (class + 1) * 100 + instance.
    values = np.array([[0, 1, 5, 300], [301, 6100, 6101, 124]], np.uint16)
    _write_png(tmp_path / "mask.png", values)
    decoded = label_io.read_label_map(tmp_path / "mask.png", "vipseg", datasets.VIPSEG)
    divisor = datasets.VIPSEG.label_divisor
    expected = [
        [255 * divisor, 0, 4 * divisor, 2 * divisor + 1],
        [2 * divisor + 2, 60 * divisor + 1, 60 * divisor + 2, 123 * divisor],
    ]
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize(
    "label_format,dataset",
    [("kitti_step", datasets.KITTI_STEP), ("vipseg", datasets.VIPSEG)],
)
def test_write_then_read_round_trips(tmp_path, label_format, dataset):
    rng = np.random.default_rng(0)
    thing = dataset.thing_ids[0]
    divisor = dataset.label_divisor
    panoptic = np.where(
        rng.random((9, 11)) < 0.5,
        thing * divisor + rng.integers(0, 50, (9, 11)),  # instance 0 is crowd
        rng.choice([1, 3, dataset.ignore_label], (9, 11)) * divisor,
    )
    label_io.write_label_map(tmp_path / "a" / "f.png", panoptic, label_format, dataset)
    decoded = label_io.read_label_map(tmp_path / "a" / "f.png", label_format, dataset)
    np.testing.assert_array_equal(decoded, panoptic)


def test_bad_inputs_raise_label_file_errors(tmp_path):
    write_kitti_folders(tmp_path)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    # A prediction of another size.
    _write_png(pred / "0002" / "000001.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(label_io.LabelFileError, match="differs from the ground truth") as error:
        evaluate_lib.evaluate_folders(str(gt), str(pred), KITTI, "kitti_step")
    assert str(pred / "0002" / "000001.png") in str(error.value)
    # A class the dataset does not have (R = 30 with 19 classes).
    _write_png(pred / "0002" / "000001.png", np.full((12, 20, 3), [30, 0, 0], np.uint8))
    with pytest.raises(label_io.LabelFileError, match=r"classes \[30\]") as error:
        evaluate_lib.evaluate_folders(str(gt), str(pred), KITTI, "kitti_step")
    assert str(pred / "0002" / "000001.png") in str(error.value)
    # A missing prediction frame.
    (pred / "0002" / "000001.png").unlink()
    with pytest.raises(label_io.LabelFileError, match="missing prediction") as error:
        evaluate_lib.evaluate_folders(str(gt), str(pred), KITTI, "kitti_step")
    assert str(pred / "0002" / "000001.png") in str(error.value)
    # Wrong channel count for the format, and an empty ground-truth folder.
    with pytest.raises(label_io.LabelFileError, match="one-channel"):
        label_io.read_label_map(gt / "0002" / "000000.png", "vipseg", datasets.VIPSEG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(label_io.LabelFileError, match="holds no"):
        evaluate_lib.evaluate_folders(str(tmp_path / "empty"), str(pred), KITTI, "kitti_step")
