"""Whole-video inference: a video in, panoptic PNGs + overlay MP4 + tracks JSON out."""

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np
from absl import logging

from deeplab_video import config, datasets
from deeplab_video.data import background, panoptic_png, video_io
from deeplab_video.export import saved_model_runner, tflite_runner
from deeplab_video.inference import model_loading
from deeplab_video.post_processing import video_tracker, visualization

# Frames whose outputs may wait for the writer thread (each holds a frame and its map).
_PENDING_WRITES = 4


@dataclasses.dataclass
class TrackRecord:
    """One thing track over the video (what tracks.json lists)."""

    track_id: int
    class_id: int
    class_name: str
    first_frame: int
    last_frame: int
    boxes: dict[int, list[float]] = dataclasses.field(default_factory=dict)


class PredictionWriter:
    """Writes per-frame predictions as PNGs, an overlay video and a tracks JSON."""

    def __init__(
        self,
        output_dir: str,
        descriptor: datasets.DatasetDescriptor,
        fps: float,
        write_video: bool = True,
    ):
        self._output_dir = output_dir
        self._descriptor = descriptor
        self._fps = fps
        self._write_video = write_video
        self._video: cv2.VideoWriter | None = None
        self._tracks: dict[int, TrackRecord] = {}
        self.num_frames = 0
        os.makedirs(os.path.join(output_dir, "panoptic"), exist_ok=True)

    def add(self, frame_index: int, frame: np.ndarray, panoptic: np.ndarray) -> None:
        """Writes one frame's outputs.

        Args:
            frame_index: index of the frame in the video.
            frame: uint8 [height, width, 3] RGB.
            panoptic: int32 [height, width] with video-consistent track ids.
        """
        divisor = self._descriptor.label_divisor
        panoptic_png.write(
            os.path.join(self._output_dir, "panoptic", f"{frame_index:06d}.png"), panoptic, divisor
        )
        labels = visualization.panoptic_labels(panoptic)
        things = visualization.thing_statistics(panoptic, self._descriptor, labels)
        if self._write_video:
            if self._video is None:
                self._video = cv2.VideoWriter(
                    os.path.join(self._output_dir, "overlay.mp4"),
                    cv2.VideoWriter_fourcc(*"mp4v"),
                    self._fps,
                    (frame.shape[1], frame.shape[0]),
                )
            drawn = visualization.overlay(frame, panoptic, self._descriptor, things, labels)
            self._video.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        self._record_tracks(frame_index, things, panoptic.shape)
        self.num_frames += 1

    def close(self) -> dict:
        """Finishes the video and writes tracks.json; returns a summary dict."""
        if self._video is not None:
            self._video.release()
        tracks = [dataclasses.asdict(t) for t in sorted(self._tracks.values(), key=_track_key)]
        with open(os.path.join(self._output_dir, "tracks.json"), "w", encoding="utf-8") as f:
            json.dump({"num_frames": self.num_frames, "tracks": tracks}, f, indent=1)
        return {"frames": self.num_frames, "tracks": len(tracks), "output_dir": self._output_dir}

    def _record_tracks(
        self, frame_index: int, things: visualization.ThingStatistics, shape: tuple[int, int]
    ) -> None:
        height, width = shape
        divisor = self._descriptor.label_divisor
        boxes = np.round(things.boxes / np.array([width, height, width, height]), 5).tolist()
        for label, box in zip(things.labels.tolist(), boxes, strict=True):
            class_id = label // divisor
            record = self._tracks.setdefault(
                label,
                TrackRecord(
                    track_id=label % divisor,
                    class_id=class_id,
                    class_name=self._descriptor.class_names[class_id],
                    first_frame=frame_index,
                    last_frame=frame_index,
                ),
            )
            record.last_frame = frame_index
            record.boxes[frame_index] = box


def _track_key(track: TrackRecord) -> tuple[int, int]:
    return track.first_frame, track.track_id


def run_inference(
    input_path: str,
    output_dir: str,
    config_file: str | None = None,
    checkpoint: str | None = None,
    saved_model: str | None = None,
    tflite: str | None = None,
    dataset: str | None = None,
    write_video: bool = True,
    max_frames: int = 0,
    on_prediction: Callable[[int], None] | None = None,
) -> dict:
    """Segments and tracks every frame of a video; see inference/infer.py for the outputs.

    Args:
        input_path: video file or folder of frames.
        output_dir: where the outputs go.
        config_file: experiment textproto (model, post-processing and tracking options).
        checkpoint: checkpoint file or model_dir for config_file runs (None: fresh weights).
        saved_model: an exported SavedModel to run instead of config_file.
        tflite: an exported TFLite model to run instead of config_file.
        dataset: descriptor name; defaults to the config's eval dataset.
        write_video: whether overlay.mp4 is written.
        max_frames: stop after this many frames (0 = all).
        on_prediction: called with the number of frames predicted so far after each
            frame's prediction is handed to the writer (progress and timing hooks).

    Returns:
        A summary dict: frames, tracks, output_dir, seconds, frames_per_second.
    """
    info = video_io.probe(input_path)
    logging.info(
        "Input %s: %dx%d, ~%d frames at %.1f fps",
        input_path,
        info.width,
        info.height,
        info.num_frames,
        info.fps,
    )
    if saved_model:
        runner = saved_model_runner.SavedModelVideoRunner(saved_model)
        descriptor = datasets.get_descriptor(dataset)
    elif tflite:
        runner = tflite_runner.TFLiteVideoRunner(tflite)
        descriptor = datasets.get_descriptor(dataset)
    else:
        options = config.load_config(config_file)
        model = model_loading.load_inference_model(options, checkpoint, config_file)
        runner = video_tracker.VideoRunner(model, options)
        descriptor = datasets.get_descriptor(dataset or options.eval_dataset_options.dataset)
    writer = PredictionWriter(output_dir, descriptor, info.fps, write_video)
    # Decoding and writing run on worker threads, overlapped with the model.
    frames = background.prefetch(_limited(video_io.read_frames(input_path), max_frames))
    total = min(info.num_frames, max_frames) if max_frames else info.num_frames
    start = time.perf_counter()
    with background.OrderedCalls(writer.add, max_pending=_PENDING_WRITES) as writes:
        for done, prediction in enumerate(runner.stream(frames), start=1):
            writes.submit(prediction.frame_index, prediction.frame, prediction.panoptic)
            _progress(done, total, start)
            if on_prediction is not None:
                on_prediction(done)
    summary = writer.close()
    seconds = time.perf_counter() - start
    summary.update(
        seconds=round(seconds, 2), frames_per_second=round(summary["frames"] / seconds, 2)
    )
    sys.stderr.write("\n")
    return summary


def _limited(frames: Iterable[np.ndarray], max_frames: int) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if max_frames and index >= max_frames:
            return
        yield frame


def _progress(done: int, total: int, start: float) -> None:
    """A one-line progress bar on stderr: frames, percentage, frames/s and ETA."""
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed > 0 else 0.0
    total = max(total, done)
    eta = (total - done) / rate if rate > 0 else 0.0
    filled = int(30 * done / total)
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} frames "
        f"{rate:.1f} fps ETA {eta:.0f}s"
    )
    sys.stderr.flush()
