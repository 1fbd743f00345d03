"""Dataset descriptors: the constants of every supported dataset in one place.

A descriptor fixes the number of classes, which classes are things, the label divisor
(panoptic = semantic * label_divisor + instance), the ignore label, class names and a
colour map. Nothing here imports TensorFlow, so configs, converters and metrics can use it.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """Constants of one video panoptic dataset.

    Attributes:
        name: the key used in DatasetOptions.dataset.
        class_names: one name per contiguous class id 0..num_classes-1.
        thing_ids: ids of the thing classes (instances are tracked); the rest are stuff.
        label_divisor: panoptic = semantic * label_divisor + instance.
        ignore_label: semantic label of void pixels.
        colormap: uint8-valued (R, G, B) per class id.
        is_video: whether the dataset has sequences (all of ours do).
    """

    name: str
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    label_divisor: int
    ignore_label: int
    colormap: tuple[tuple[int, int, int], ...]
    is_video: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_classes) if i not in self.thing_ids)

    def colormap_array(self) -> np.ndarray:
        """uint8 [256, 3] colour lookup table; ids without a class (void) are black."""
        table = np.zeros((256, 3), np.uint8)
        table[: self.num_classes] = np.asarray(self.colormap, np.uint8)
        return table


# Cityscapes train ids, used by KITTI-STEP and Cityscapes-VPS.
_CITYSCAPES_CLASSES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)

# VIPSeg's 124 categories in its contiguous order (VIPSeg-Dataset panoVIPSeg_categories.json):
# (name, is_thing, colour). 58 things, 66 stuff.
_VIPSEG_CLASSES = (
    ("wall", False, (120, 120, 120)),
    ("ceiling", False, (180, 120, 120)),
    ("door", True, (6, 230, 230)),
    ("stair", False, (80, 50, 50)),
    ("ladder", True, (4, 200, 3)),
    ("escalator", False, (120, 120, 80)),
    ("Playground_slide", False, (140, 140, 140)),
    ("handrail_or_fence", False, (204, 5, 255)),
    ("window", True, (230, 230, 230)),
    ("rail", False, (4, 250, 7)),
    ("goal", True, (224, 5, 255)),
    ("pillar", False, (235, 255, 7)),
    ("pole", False, (150, 5, 61)),
    ("floor", False, (120, 120, 70)),
    ("ground", False, (8, 255, 51)),
    ("grass", False, (255, 6, 82)),
    ("sand", False, (143, 255, 140)),
    ("athletic_field", False, (204, 255, 4)),
    ("road", False, (255, 51, 7)),
    ("path", False, (204, 70, 3)),
    ("crosswalk", False, (0, 102, 200)),
    ("building", False, (61, 230, 250)),
    ("house", False, (255, 6, 51)),
    ("bridge", False, (11, 102, 255)),
    ("tower", False, (255, 7, 71)),
    ("windmill", False, (255, 9, 224)),
    ("well_or_well_lid", False, (9, 7, 230)),
    ("other_construction", False, (220, 220, 220)),
    ("sky", False, (255, 9, 92)),
    ("mountain", False, (112, 9, 255)),
    ("stone", False, (8, 255, 214)),
    ("wood", False, (7, 255, 224)),
    ("ice", False, (255, 184, 6)),
    ("snowfield", False, (10, 255, 71)),
    ("grandstand", False, (255, 41, 10)),
    ("sea", False, (7, 255, 255)),
    ("river", False, (224, 255, 8)),
    ("lake", False, (102, 8, 255)),
    ("waterfall", False, (255, 61, 6)),
    ("water", False, (255, 194, 7)),
    ("billboard_or_Bulletin_Board", False, (255, 122, 8)),
    ("sculpture", True, (0, 255, 20)),
    ("pipeline", False, (255, 8, 41)),
    ("flag", True, (255, 5, 153)),
    ("parasol_or_umbrella", True, (6, 51, 255)),
    ("cushion_or_carpet", False, (235, 12, 255)),
    ("tent", True, (160, 150, 20)),
    ("roadblock", True, (0, 163, 255)),
    ("car", True, (140, 140, 140)),
    ("bus", True, (250, 10, 15)),
    ("truck", True, (20, 255, 0)),
    ("bicycle", True, (31, 255, 0)),
    ("motorcycle", True, (255, 31, 0)),
    ("wheeled_machine", False, (255, 224, 0)),
    ("ship_or_boat", True, (153, 255, 0)),
    ("raft", True, (0, 0, 255)),
    ("airplane", True, (255, 71, 0)),
    ("tyre", False, (0, 235, 255)),
    ("traffic_light", False, (0, 173, 255)),
    ("lamp", False, (31, 0, 255)),
    ("person", True, (11, 200, 200)),
    ("cat", True, (255, 82, 0)),
    ("dog", True, (0, 255, 245)),
    ("horse", True, (0, 61, 255)),
    ("cattle", True, (0, 255, 112)),
    ("other_animal", True, (0, 255, 133)),
    ("tree", False, (255, 0, 0)),
    ("flower", False, (255, 163, 0)),
    ("other_plant", False, (255, 102, 0)),
    ("toy", False, (194, 255, 0)),
    ("ball_net", False, (0, 143, 255)),
    ("backboard", False, (51, 255, 0)),
    ("skateboard", True, (0, 82, 255)),
    ("bat", False, (0, 255, 41)),
    ("ball", True, (0, 255, 173)),
    ("cupboard_or_showcase_or_storage_rack", False, (10, 0, 255)),
    ("box", True, (173, 255, 0)),
    ("traveling_case_or_trolley_case", True, (0, 255, 153)),
    ("basket", True, (255, 92, 0)),
    ("bag_or_package", True, (255, 0, 255)),
    ("trash_can", False, (255, 0, 245)),
    ("cage", False, (255, 0, 102)),
    ("plate", True, (255, 173, 0)),
    ("tub_or_bowl_or_pot", True, (255, 0, 20)),
    ("bottle_or_cup", True, (255, 184, 184)),
    ("barrel", True, (0, 31, 255)),
    ("fishbowl", True, (0, 255, 61)),
    ("bed", True, (0, 71, 255)),
    ("pillow", True, (255, 0, 204)),
    ("table_or_desk", True, (0, 255, 194)),
    ("chair_or_seat", True, (0, 255, 82)),
    ("bench", True, (0, 10, 255)),
    ("sofa", True, (0, 112, 255)),
    ("shelf", False, (51, 0, 255)),
    ("bathtub", False, (0, 194, 255)),
    ("gun", True, (0, 122, 255)),
    ("commode", True, (0, 255, 163)),
    ("roaster", True, (255, 153, 0)),
    ("other_machine", False, (0, 255, 10)),
    ("refrigerator", True, (255, 112, 0)),
    ("washing_machine", True, (143, 255, 0)),
    ("Microwave_oven", True, (82, 0, 255)),
    ("fan", True, (163, 255, 0)),
    ("curtain", False, (255, 235, 0)),
    ("textiles", False, (8, 184, 170)),
    ("clothes", False, (133, 0, 255)),
    ("painting_or_poster", True, (0, 255, 92)),
    ("mirror", True, (184, 0, 255)),
    ("flower_pot_or_vase", True, (255, 0, 31)),
    ("clock", True, (0, 184, 255)),
    ("book", False, (0, 214, 255)),
    ("tool", False, (255, 0, 112)),
    ("blackboard", False, (92, 255, 0)),
    ("tissue", False, (0, 224, 255)),
    ("screen_or_television", True, (112, 224, 255)),
    ("computer", True, (70, 184, 160)),
    ("printer", True, (163, 0, 255)),
    ("Mobile_phone", True, (153, 0, 255)),
    ("keyboard", True, (71, 255, 0)),
    ("other_electronic_product", False, (255, 0, 163)),
    ("fruit", False, (255, 204, 0)),
    ("food", False, (255, 0, 143)),
    ("instrument", True, (0, 255, 235)),
    ("train", True, (133, 255, 0)),
)

# The built-in synthetic dataset (deeplab_video.data.synthetic): 3 stuff + 3 thing classes.
_SYNTHETIC_CLASSES = (
    ("sky", False, (70, 130, 180)),
    ("grass", False, (107, 142, 35)),
    ("road", False, (128, 64, 128)),
    ("disc", True, (220, 20, 60)),
    ("box", True, (0, 0, 142)),
    ("triangle", True, (250, 170, 30)),
)

KITTI_STEP = DatasetDescriptor(
    name="kitti_step",
    class_names=tuple(name for name, _ in _CITYSCAPES_CLASSES),
    thing_ids=(11, 13),  # person, car: the only tracked classes of KITTI-STEP.
    label_divisor=1000,
    ignore_label=255,
    colormap=tuple(color for _, color in _CITYSCAPES_CLASSES),
)
CITYSCAPES_VPS = DatasetDescriptor(
    name="cityscapes_vps",
    class_names=KITTI_STEP.class_names,
    thing_ids=tuple(range(11, 19)),  # person .. bicycle
    label_divisor=1000,
    ignore_label=255,
    colormap=KITTI_STEP.colormap,
)
VIPSEG = DatasetDescriptor(
    name="vipseg",
    class_names=tuple(name for name, _, _ in _VIPSEG_CLASSES),
    thing_ids=tuple(i for i, (_, is_thing, _) in enumerate(_VIPSEG_CLASSES) if is_thing),
    label_divisor=10000,  # as the official Video-kMaX VIPSeg loader
    ignore_label=255,
    colormap=tuple(color for _, _, color in _VIPSEG_CLASSES),
)
SYNTHETIC = DatasetDescriptor(
    name="synthetic",
    class_names=tuple(name for name, _, _ in _SYNTHETIC_CLASSES),
    thing_ids=tuple(i for i, (_, is_thing, _) in enumerate(_SYNTHETIC_CLASSES) if is_thing),
    label_divisor=1000,
    ignore_label=255,
    colormap=tuple(color for _, _, color in _SYNTHETIC_CLASSES),
)

DATASETS = {d.name: d for d in (KITTI_STEP, VIPSEG, CITYSCAPES_VPS, SYNTHETIC)}


def get_descriptor(name: str) -> DatasetDescriptor:
    """Returns the descriptor registered under `name`.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]
