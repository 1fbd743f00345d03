"""A deterministic synthetic video panoptic dataset that trains on a CPU in minutes.

Classes come from `datasets.SYNTHETIC`: three stuff classes (sky, grass, road) laid out as
textured regions under a slowly panning camera, and three thing classes (disc, box,
triangle) that move on smooth paths, change scale a little, occlude each other in depth
order and enter or leave the frame. Every third sequence also holds two instances of the
same class and the same colour that cross each other, the case in which appearance alone
cannot keep identities apart (what Video-kMaX's location-aware memory buffer resolves).
Some sequences have a void strip at the bottom (a car hood, labelled with the ignore label).
`render_sequence` draws any list of moving objects over such a scene; the crowd split
(`synthetic_crowd`: many look-alikes crossing and hiding behind void poles) uses it.

Labels follow the dataset conventions: panoptic = semantic * label_divisor + instance, thing
instance ids count from 1 in each sequence and stay fixed across its frames, stuff has
instance 0. Everything is a function of the seed.

Output layout (what `ensure_synthetic_dataset` writes):
    {output_dir}/train-00000-of-0000N.tfrecord ...   (tfrecord schema, whole sequences per
    {output_dir}/val-00000-of-0000M.tfrecord ...      shard)
    {output_dir}/images/{split}/{sequence:04d}/{frame:06d}.png         RGB frames
    {output_dir}/panoptic_maps/{split}/{sequence:04d}/{frame:06d}.png  KITTI-STEP label PNGs:
        R = semantic, G * 256 + B = instance (DeepLab2's build_step_data.py reads this layout)
    {output_dir}/synthetic_dataset.json   the generation parameters, written last
"""

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import cv2
import numpy as np
from absl import logging

from deeplab_video import datasets
from deeplab_video.data import panoptic_png, tfrecord

DESCRIPTOR = datasets.SYNTHETIC
SPLITS = ("train", "val")
MARKER_FILE = "synthetic_dataset.json"
_SKY, _GRASS, _ROAD = (DESCRIPTOR.class_names.index(n) for n in ("sky", "grass", "road"))
_DISC, _BOX, _TRIANGLE = (DESCRIPTOR.class_names.index(n) for n in ("disc", "box", "triangle"))


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Generation parameters; the defaults are the main job's dataset.

    Attributes:
        seed: everything is a function of it.
        num_train_sequences, num_val_sequences: sequences per split.
        min_frames, max_frames: each sequence's length is drawn from this range.
        height, width: frame size in pixels.
        max_objects: most moving objects per sequence besides a crossing pair.
        num_train_shards, num_val_shards: TFRecord shards per split.
        write_pngs: also write KITTI-STEP-style image and label PNGs.
    """

    seed: int = 0
    num_train_sequences: int = 24
    num_val_sequences: int = 6
    min_frames: int = 12
    max_frames: int = 20
    height: int = 96
    width: int = 128
    max_objects: int = 4
    num_train_shards: int = 4
    num_val_shards: int = 2
    write_pngs: bool = True

    def num_sequences(self, split: str) -> int:
        return self.num_train_sequences if split == "train" else self.num_val_sequences

    def num_shards(self, split: str) -> int:
        return self.num_train_shards if split == "train" else self.num_val_shards


@dataclasses.dataclass(frozen=True)
class SyntheticSequence:
    """One generated video.

    Attributes:
        sequence_id: four-digit id, e.g. "0003".
        images: uint8 [num_frames, height, width, 3] RGB.
        panoptic: int32 [num_frames, height, width].
    """

    sequence_id: str
    images: np.ndarray
    panoptic: np.ndarray


@dataclasses.dataclass(frozen=True)
class MovingObject:
    """A thing instance moving on a straight path with a perpendicular wobble."""

    semantic: int
    color: np.ndarray  # float32 [3]
    start: np.ndarray  # float32 [2] (y, x) at frame 0
    velocity: np.ndarray  # float32 [2] pixels per frame
    wobble: tuple[float, float, float]  # amplitude, angular frequency, phase (perpendicular)
    radius: float
    scale_wobble: tuple[float, float]  # relative amplitude, phase
    aspect: float  # boxes: width / height
    spin: float  # triangles: radians per frame
    depth: float


def class_color(rng: np.random.Generator, semantic: int, spread: float) -> np.ndarray:
    base = np.asarray(DESCRIPTOR.colormap[semantic], np.float32)
    return np.clip(base + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)


def _random_object(
    rng: np.random.Generator, num_frames: int, height: int, width: int
) -> MovingObject:
    """An object whose path passes through the frame at the middle of the sequence."""
    semantic = int(rng.choice(DESCRIPTOR.thing_ids))
    middle = np.array([rng.uniform(0.35, 0.95) * height, rng.uniform(0.1, 0.9) * width])
    speed = rng.uniform(0.015, 0.05) * width
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([0.4 * np.sin(angle), np.cos(angle)])
    return MovingObject(
        semantic=semantic,
        color=class_color(rng, semantic, 40),
        start=(middle - velocity * (num_frames - 1) / 2).astype(np.float32),
        velocity=velocity.astype(np.float32),
        wobble=(rng.uniform(0, 0.04) * height, rng.uniform(0.2, 0.6), rng.uniform(0, 2 * np.pi)),
        radius=rng.uniform(0.07, 0.14) * min(height, width),
        scale_wobble=(rng.uniform(0.0, 0.15), rng.uniform(0, 2 * np.pi)),
        aspect=rng.uniform(0.6, 1.6),
        spin=rng.uniform(-0.15, 0.15),
        depth=rng.uniform(),
    )


def _crossing_pair(
    rng: np.random.Generator, num_frames: int, height: int, width: int
) -> list[MovingObject]:
    """Two objects of one class and one colour that swap sides, crossing mid-sequence."""
    template = _random_object(rng, num_frames, height, width)
    row = rng.uniform(0.5, 0.8) * height
    speed = 0.7 * width / max(num_frames - 1, 1)
    pair = []
    for side in (-1.0, 1.0):
        start = np.array([row + side * 0.03 * height, (0.5 + side * 0.35) * width], np.float32)
        velocity = np.array([0.0, -side * speed], np.float32)
        pair.append(
            dataclasses.replace(template, start=start, velocity=velocity, depth=rng.uniform())
        )
    return pair


def object_mask(obj: MovingObject, frame: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """bool [height, width]: the object's pixels in `frame`."""
    amplitude, frequency, phase = obj.wobble
    direction = obj.velocity / (np.linalg.norm(obj.velocity) + 1e-6)
    normal = np.array([direction[1], -direction[0]])
    center = (
        obj.start + obj.velocity * frame + normal * amplitude * np.sin(frequency * frame + phase)
    )
    radius = obj.radius * (1 + obj.scale_wobble[0] * np.sin(0.3 * frame + obj.scale_wobble[1]))
    dy, dx = yy - center[0], xx - center[1]
    if obj.semantic == _DISC:
        return dy**2 + dx**2 <= radius**2
    if obj.semantic == _BOX:
        return (np.abs(dx) <= radius * obj.aspect) & (np.abs(dy) <= radius / obj.aspect)
    # Triangle rotating slowly about its centre: inside all three half-planes.
    angles = obj.spin * frame + np.array([0.0, 2.0, 4.0]) * np.pi / 3 - np.pi / 2
    corners = np.stack([np.sin(angles), np.cos(angles)], axis=1) * radius  # (y, x)
    inside = np.ones(yy.shape, bool)
    for i in range(3):
        (ay, ax), (by, bx) = corners[i], corners[(i + 1) % 3]
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
    return inside


def generate_sequence(
    rng: np.random.Generator,
    sequence_id: str,
    num_frames: int,
    height: int,
    width: int,
    *,
    max_objects: int,
    crossing: bool,
) -> SyntheticSequence:
    """Renders one video.

    Args:
        rng: the sequence's random generator (all randomness comes from it).
        sequence_id: the id stored with the frames.
        num_frames, height, width: video size.
        max_objects: at most this many independent objects (at least one).
        crossing: add a same-class, same-colour pair that crosses mid-sequence.

    Returns:
        The sequence's frames and labels.
    """
    objects = [
        _random_object(rng, num_frames, height, width)
        for _ in range(rng.integers(1, max_objects + 1))
    ]
    if crossing:
        objects += _crossing_pair(rng, num_frames, height, width)
    return render_sequence(rng, sequence_id, objects, num_frames, height, width)


def render_sequence(
    rng: np.random.Generator,
    sequence_id: str,
    objects: list[MovingObject],
    num_frames: int,
    height: int,
    width: int,
    void_mask: np.ndarray | None = None,
) -> SyntheticSequence:
    """Renders moving objects over a random stuff background under a panning camera.

    Args:
        rng: draws the background, the camera, the car hood and the pixel noise.
        sequence_id: the id stored with the frames.
        objects: the things; instance id i + 1 is objects[i], drawn far to near by depth.
        num_frames, height, width: video size.
        void_mask: optional bool [height, width], pixels covered in every frame by a void
            occluder in front of everything (labelled with the ignore label, drawn as the
            car hood is).

    Returns:
        The sequence's frames and labels.
    """
    horizon = rng.uniform(0.3, 0.45) * height
    horizon_wave = (rng.uniform(0, 0.05) * height, rng.uniform(20, 60), rng.uniform(0, 6.3))
    road_center = rng.uniform(0.3, 0.7) * width
    pan = rng.uniform(-1.0, 1.0)
    hood = int(rng.uniform(0.06, 0.12) * height) if rng.uniform() < 0.5 else 0
    stuff_colors = {c: class_color(rng, c, 20) for c in (_SKY, _GRASS, _ROAD)}
    margin = int(np.ceil(abs(pan) * num_frames)) + 1
    texture = rng.normal(0, 10, (height, width + 2 * margin, 3)).astype(np.float32)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    void = np.zeros((height, width), bool) if void_mask is None else void_mask.copy()
    if hood:
        void[-hood:] = True
    shading = (1.0 - 0.25 * yy / height)[..., None]
    images = np.empty((num_frames, height, width, 3), np.uint8)
    panoptic = np.empty((num_frames, height, width), np.int32)
    for frame in range(num_frames):
        world_x = xx + pan * frame
        ground_y = horizon + horizon_wave[0] * np.sin(world_x / horizon_wave[1] + horizon_wave[2])
        depth_ratio = np.clip((yy - horizon) / (height - horizon), 0, 1)
        on_road = np.abs(world_x - road_center) <= width * (0.04 + 0.35 * depth_ratio)
        label = np.where(yy < ground_y, _SKY, np.where(on_road, _ROAD, _GRASS)).astype(np.int32)
        label *= DESCRIPTOR.label_divisor
        offset = margin + int(round(pan * frame))
        grain = texture[:, offset : offset + width]
        image = grain.copy()
        for semantic, color in stuff_colors.items():
            image += (label == semantic * DESCRIPTOR.label_divisor)[..., None] * color
        for instance_id, obj in sorted(enumerate(objects, 1), key=lambda item: item[1].depth):
            mask = object_mask(obj, frame, yy, xx)
            label[mask] = obj.semantic * DESCRIPTOR.label_divisor + instance_id
            image[mask] = obj.color * shading[mask] + 0.5 * grain[mask]
        label[void] = DESCRIPTOR.ignore_label * DESCRIPTOR.label_divisor
        image[void] = 40 + grain[void]
        image += rng.normal(0, 3, image.shape).astype(np.float32)
        images[frame] = np.clip(image, 0, 255).astype(np.uint8)
        panoptic[frame] = label
    return SyntheticSequence(sequence_id, images, panoptic)


def generate_split(config: SyntheticConfig, split: str) -> list[SyntheticSequence]:
    """Generates the sequences of a split ("train" or "val"); deterministic in config.seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    if not 1 <= config.min_frames <= config.max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {config}")
    sequences = []
    for index in range(config.num_sequences(split)):
        rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
        num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
        sequences.append(
            generate_sequence(
                rng,
                f"{index:04d}",
                num_frames,
                config.height,
                config.width,
                max_objects=config.max_objects,
                crossing=index % 3 == 0,
            )
        )
    return sequences


def write_tfrecords(
    sequences: list[SyntheticSequence], output_dir: str, split: str, num_shards: int
) -> list[str]:
    """Writes the sequences as TFRecord shards (sequence i goes whole to shard i % num_shards).

    Returns:
        The shard paths.
    """
    with tfrecord.ShardedWriter(output_dir, split, num_shards) as writer:
        for index, sequence in enumerate(sequences):
            for frame, (image, label) in enumerate(
                zip(sequence.images, sequence.panoptic, strict=True)
            ):
                record = tfrecord.encode_frame(image, label, sequence.sequence_id, frame)
                writer.write(index % num_shards, record)
    return writer.paths


def write_step_pngs(sequences: list[SyntheticSequence], output_dir: str, split: str) -> None:
    """Writes images/{split}/... and panoptic_maps/{split}/... in KITTI-STEP's PNG format.

    Raises:
        OSError: an image cannot be written.
    """
    for sequence in sequences:
        image_dir = os.path.join(output_dir, "images", split, sequence.sequence_id)
        label_dir = os.path.join(output_dir, "panoptic_maps", split, sequence.sequence_id)
        os.makedirs(image_dir, exist_ok=True)
        for frame, (image, label) in enumerate(
            zip(sequence.images, sequence.panoptic, strict=True)
        ):
            name = tfrecord.frame_id_string(frame) + ".png"
            panoptic_png.write(os.path.join(label_dir, name), label, DESCRIPTOR.label_divisor)
            image_path = os.path.join(image_dir, name)
            if not cv2.imwrite(image_path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{image_path}: cannot be written")


def ensure_synthetic_dataset(
    output_dir: str | os.PathLike, config: SyntheticConfig | None = None
) -> str:
    """Generates the train and val splits into output_dir unless they are already there.

    Args:
        output_dir: where the dataset lives (created if missing).
        config: generation parameters (default: SyntheticConfig()).

    Returns:
        output_dir as a string.

    Raises:
        ValueError: output_dir holds a synthetic dataset made with other parameters.
        FileExistsError: output_dir exists, is not empty and holds no synthetic dataset.
    """
    config = config or SyntheticConfig()

    def write(staging: str) -> None:
        for split in SPLITS:
            write_split(
                generate_split(config, split),
                staging,
                split,
                config.num_shards(split),
                config.write_pngs,
            )

    return ensure_generated(output_dir, dataclasses.asdict(config), write)


def write_split(
    sequences: list[SyntheticSequence],
    output_dir: str,
    split: str,
    num_shards: int,
    write_pngs: bool,
) -> None:
    """Writes a split's TFRecord shards and, when write_pngs, its KITTI-STEP PNGs."""
    write_tfrecords(sequences, output_dir, split, num_shards)
    if write_pngs:
        write_step_pngs(sequences, output_dir, split)
    logging.info("Wrote %d %s sequences", len(sequences), split)


def ensure_generated(
    output_dir: str | os.PathLike, parameters: dict, write: Callable[[str], None]
) -> str:
    """Runs write(directory) to generate a dataset unless output_dir already holds it.

    The dataset is written into a temporary sibling directory that is renamed into place
    only when complete, and carries a marker file with its parameters.

    Args:
        output_dir: where the dataset lives (created if missing).
        parameters: JSON-serialisable generation parameters, stored in the marker file.
        write: writes the whole dataset into the directory it is given.

    Returns:
        output_dir as a string.

    Raises:
        ValueError: output_dir holds a synthetic dataset made with other parameters.
        FileExistsError: output_dir exists, is not empty and holds no synthetic dataset.
    """
    output_dir = os.fspath(output_dir)
    if _check_existing(output_dir, parameters):
        logging.info("Synthetic dataset already present in %s", output_dir)
        return output_dir
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
    os.chmod(staging, 0o755)
    try:
        write(staging)
        with open(os.path.join(staging, MARKER_FILE), "w", encoding="utf-8") as f:
            json.dump(parameters, f, indent=2)
        try:
            os.replace(staging, output_dir)
        except OSError:
            # Another process finished the same dataset first: keep its copy.
            if not _check_existing(output_dir, parameters):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("Synthetic dataset written to %s", output_dir)
    return output_dir


def _check_existing(output_dir: str, wanted: dict) -> bool:
    """True when output_dir holds the wanted dataset; False when it is absent or empty.

    Raises:
        ValueError: it holds a synthetic dataset made with other parameters.
        FileExistsError: it is not empty and holds no synthetic dataset.
    """
    marker = os.path.join(output_dir, MARKER_FILE)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            found = json.load(f)
        if found != wanted:
            raise ValueError(
                f"{output_dir} holds a synthetic dataset generated with {found}, not {wanted}; "
                "delete it or choose another directory"
            )
        return True
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"{output_dir} is not empty and holds no {MARKER_FILE}; choose an empty directory"
        )
    return False
