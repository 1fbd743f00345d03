"""The synthetic "crowd" split: look-alike objects that cross, hide and reappear.

Every sequence holds many instances of one thing class with one colour, one size and one
shape, so that appearance alone cannot tell them apart: the scene Video-kMaX's
location-aware memory buffer (LA-MB) is designed for (Shin et al., WACV 2024, Sec. 3.2
and supplementary Fig. 2). The objects move at nearly constant velocity (a small
vertical drift and a faint wobble): they come in pairs that cross each other at a random
place and time, one passing in front of the other, and they pass behind void poles
(labelled with the ignore label) that hide them completely for a few frames before they
reappear on the other side. Objects also enter and leave the frame. Backgrounds, camera
pan and car hood are those of the main synthetic dataset (`synthetic.render_sequence`),
and classes, colours and labels follow `datasets.SYNTHETIC`, so a model trained on the
main dataset's train split is evaluated on this split unchanged.

Output layout (what `ensure_crowd_dataset` writes; a directory of its own):
    {output_dir}/crowd-00000-of-0000N.tfrecord ...
    {output_dir}/images/crowd/{sequence:04d}/{frame:06d}.png
    {output_dir}/panoptic_maps/crowd/{sequence:04d}/{frame:06d}.png
    {output_dir}/synthetic_dataset.json   the generation parameters, written last
"""

import dataclasses
import os

import numpy as np

from deeplab_video.data import synthetic

SPLIT = "crowd"
# Random stream of the split (train and val use 0 and 1: see synthetic.generate_split).
_STREAM = 2


@dataclasses.dataclass(frozen=True)
class CrowdConfig:
    """Generation parameters of the crowd split.

    Attributes:
        seed: everything is a function of it.
        num_sequences: sequences in the split.
        min_frames, max_frames: each sequence's length is drawn from this range.
        height, width: frame size in pixels.
        min_objects, max_objects: look-alike objects per sequence (at least two).
        num_occluders: void poles per sequence.
        hidden_frames: (least, most) frames a pole hides an object of average speed
            completely.
        num_shards: TFRecord shards.
        write_pngs: also write KITTI-STEP-style image and label PNGs.
    """

    seed: int = 0
    num_sequences: int = 6
    min_frames: int = 20
    max_frames: int = 24
    height: int = 96
    width: int = 128
    min_objects: int = 5
    max_objects: int = 8
    num_occluders: int = 1
    hidden_frames: tuple[float, float] = (2.0, 4.0)
    num_shards: int = 2
    write_pngs: bool = True

    def validate(self) -> None:
        """Raises ValueError naming the first inconsistent parameter."""
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self}")
        if not 2 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 2 <= min_objects <= max_objects, got {self}")
        if self.num_occluders < 0 or not 0 <= self.hidden_frames[0] <= self.hidden_frames[1]:
            raise ValueError(
                f"need num_occluders >= 0 and 0 <= hidden_frames[0] <= hidden_frames[1], got {self}"
            )


# Speeds in frame widths per frame, and the object radius in frame heights.
_SPEED_RANGE = (0.02, 0.035)
_RADIUS_RANGE = (0.08, 0.1)


def _look_alike(rng: np.random.Generator, height: int, width: int) -> synthetic.MovingObject:
    """The template every object of a sequence copies: class, colour, size, shape."""
    semantic = int(rng.choice(synthetic.DESCRIPTOR.thing_ids))
    return synthetic.MovingObject(
        semantic=semantic,
        color=synthetic.class_color(rng, semantic, 40),
        start=np.zeros(2, np.float32),
        velocity=np.zeros(2, np.float32),
        wobble=(0.0, 0.0, 0.0),
        radius=rng.uniform(*_RADIUS_RANGE) * min(height, width),
        scale_wobble=(0.0, 0.0),
        aspect=rng.uniform(0.8, 1.25),
        spin=rng.uniform(-0.05, 0.05),
        depth=0.0,
    )


def _moving_copy(
    rng: np.random.Generator,
    template: synthetic.MovingObject,
    position: np.ndarray,
    frame: float,
    direction: float,
    height: int,
    width: int,
) -> synthetic.MovingObject:
    """A copy of the template at (y, x) `position` in `frame`, moving along `direction`.

    The velocity is horizontal (sign `direction`) with a small vertical drift; the
    wobble is a faint perpendicular oscillation, so the velocity stays nearly constant.
    """
    speed = rng.uniform(*_SPEED_RANGE) * width
    velocity = np.array([rng.uniform(-0.004, 0.004) * height, direction * speed], np.float32)
    return dataclasses.replace(
        template,
        start=(position - velocity * frame).astype(np.float32),
        velocity=velocity,
        wobble=(rng.uniform(0, 0.005) * height, rng.uniform(0.2, 0.6), rng.uniform(0, 2 * np.pi)),
        depth=rng.uniform(),
    )


def crowd_objects(
    rng: np.random.Generator, num_objects: int, num_frames: int, height: int, width: int
) -> list[synthetic.MovingObject]:
    """Look-alike objects in crossing pairs (and one lone walker when the count is odd).

    The two objects of a pair move in opposite directions on nearly the same row and
    meet at a random place between a quarter and three quarters of the width, at a random
    time in the middle of the sequence.
    """
    template = _look_alike(rng, height, width)
    objects = []
    for _ in range(num_objects // 2):
        row = rng.uniform(0.5, 0.85) * height
        meeting = np.array([row, rng.uniform(0.25, 0.75) * width])
        when = rng.uniform(0.3, 0.7) * (num_frames - 1)
        offset = rng.uniform(0.0, 0.04) * height
        for side in (-1.0, 1.0):
            position = meeting + np.array([side * offset, 0.0])
            objects.append(_moving_copy(rng, template, position, when, -side, height, width))
    if num_objects % 2:
        position = np.array([rng.uniform(0.5, 0.85) * height, rng.uniform(0.2, 0.8) * width])
        direction = rng.choice([-1.0, 1.0])
        objects.append(
            _moving_copy(rng, template, position, (num_frames - 1) / 2, direction, height, width)
        )
    return objects


def pole_mask(
    rng: np.random.Generator,
    num_poles: int,
    radius: float,
    hidden_frames: tuple[float, float],
    height: int,
    width: int,
) -> np.ndarray:
    """bool [height, width]: full-height void poles in the middle of the frame.

    A pole is as wide as an object plus the distance an object of average speed covers in
    a number of frames drawn from `hidden_frames`, so it hides such an object completely
    for about that many frames.
    """
    mask = np.zeros((height, width), bool)
    average_speed = np.mean(_SPEED_RANGE) * width
    for _ in range(num_poles):
        pole_width = 2 * radius + rng.uniform(*hidden_frames) * average_speed
        centre = rng.uniform(0.3, 0.7) * width
        left, right = int(round(centre - pole_width / 2)), int(round(centre + pole_width / 2))
        mask[:, max(left, 0) : max(right, 0)] = True
    return mask


def generate_crowd_split(config: CrowdConfig) -> list[synthetic.SyntheticSequence]:
    """Generates the crowd sequences; deterministic in config.seed.

    Raises:
        ValueError: inconsistent parameters (see CrowdConfig.validate).
    """
    config.validate()
    sequences = []
    for index in range(config.num_sequences):
        rng = np.random.default_rng([config.seed, _STREAM, index])
        num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
        num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects = crowd_objects(rng, num_objects, num_frames, config.height, config.width)
        poles = pole_mask(
            rng,
            config.num_occluders,
            objects[0].radius,
            config.hidden_frames,
            config.height,
            config.width,
        )
        sequences.append(
            synthetic.render_sequence(
                rng,
                f"{index:04d}",
                objects,
                num_frames,
                config.height,
                config.width,
                void_mask=poles,
            )
        )
    return sequences


def ensure_crowd_dataset(output_dir: str | os.PathLike, config: CrowdConfig | None = None) -> str:
    """Generates the crowd split into output_dir unless it is already there.

    The directory holds the crowd split only (its own marker file); keep it apart from
    the train / val dataset.

    Args:
        output_dir: where the split lives (created if missing).
        config: generation parameters (default: CrowdConfig()).

    Returns:
        output_dir as a string.

    Raises:
        ValueError: output_dir holds a synthetic dataset made with other parameters, or
            the parameters are inconsistent.
        FileExistsError: output_dir exists, is not empty and holds no synthetic dataset.
    """
    config = config or CrowdConfig()
    config.validate()

    def write(staging: str) -> None:
        synthetic.write_split(
            generate_crowd_split(config), staging, SPLIT, config.num_shards, config.write_pngs
        )

    parameters = {"split": SPLIT, **dataclasses.asdict(config)}
    parameters["hidden_frames"] = list(config.hidden_frames)
    return synthetic.ensure_generated(output_dir, parameters, write)
