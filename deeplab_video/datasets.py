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

# COCO panoptic's 133 categories (panoptic_coco_categories.json) in id order, made
# contiguous as DeepLab2 does (its label = our id + 1): (name, is_thing, colour). The 80
# things come first.
_COCO_PANOPTIC_CLASSES = (
    ("person", True, (220, 20, 60)),
    ("bicycle", True, (119, 11, 32)),
    ("car", True, (0, 0, 142)),
    ("motorcycle", True, (0, 0, 230)),
    ("airplane", True, (106, 0, 228)),
    ("bus", True, (0, 60, 100)),
    ("train", True, (0, 80, 100)),
    ("truck", True, (0, 0, 70)),
    ("boat", True, (0, 0, 192)),
    ("traffic light", True, (250, 170, 30)),
    ("fire hydrant", True, (100, 170, 30)),
    ("stop sign", True, (220, 220, 0)),
    ("parking meter", True, (175, 116, 175)),
    ("bench", True, (250, 0, 30)),
    ("bird", True, (165, 42, 42)),
    ("cat", True, (255, 77, 255)),
    ("dog", True, (0, 226, 252)),
    ("horse", True, (182, 182, 255)),
    ("sheep", True, (0, 82, 0)),
    ("cow", True, (120, 166, 157)),
    ("elephant", True, (110, 76, 0)),
    ("bear", True, (174, 57, 255)),
    ("zebra", True, (199, 100, 0)),
    ("giraffe", True, (72, 0, 118)),
    ("backpack", True, (255, 179, 240)),
    ("umbrella", True, (0, 125, 92)),
    ("handbag", True, (209, 0, 151)),
    ("tie", True, (188, 208, 182)),
    ("suitcase", True, (0, 220, 176)),
    ("frisbee", True, (255, 99, 164)),
    ("skis", True, (92, 0, 73)),
    ("snowboard", True, (133, 129, 255)),
    ("sports ball", True, (78, 180, 255)),
    ("kite", True, (0, 228, 0)),
    ("baseball bat", True, (174, 255, 243)),
    ("baseball glove", True, (45, 89, 255)),
    ("skateboard", True, (134, 134, 103)),
    ("surfboard", True, (145, 148, 174)),
    ("tennis racket", True, (255, 208, 186)),
    ("bottle", True, (197, 226, 255)),
    ("wine glass", True, (171, 134, 1)),
    ("cup", True, (109, 63, 54)),
    ("fork", True, (207, 138, 255)),
    ("knife", True, (151, 0, 95)),
    ("spoon", True, (9, 80, 61)),
    ("bowl", True, (84, 105, 51)),
    ("banana", True, (74, 65, 105)),
    ("apple", True, (166, 196, 102)),
    ("sandwich", True, (208, 195, 210)),
    ("orange", True, (255, 109, 65)),
    ("broccoli", True, (0, 143, 149)),
    ("carrot", True, (179, 0, 194)),
    ("hot dog", True, (209, 99, 106)),
    ("pizza", True, (5, 121, 0)),
    ("donut", True, (227, 255, 205)),
    ("cake", True, (147, 186, 208)),
    ("chair", True, (153, 69, 1)),
    ("couch", True, (3, 95, 161)),
    ("potted plant", True, (163, 255, 0)),
    ("bed", True, (119, 0, 170)),
    ("dining table", True, (0, 182, 199)),
    ("toilet", True, (0, 165, 120)),
    ("tv", True, (183, 130, 88)),
    ("laptop", True, (95, 32, 0)),
    ("mouse", True, (130, 114, 135)),
    ("remote", True, (110, 129, 133)),
    ("keyboard", True, (166, 74, 118)),
    ("cell phone", True, (219, 142, 185)),
    ("microwave", True, (79, 210, 114)),
    ("oven", True, (178, 90, 62)),
    ("toaster", True, (65, 70, 15)),
    ("sink", True, (127, 167, 115)),
    ("refrigerator", True, (59, 105, 106)),
    ("book", True, (142, 108, 45)),
    ("clock", True, (196, 172, 0)),
    ("vase", True, (95, 54, 80)),
    ("scissors", True, (128, 76, 255)),
    ("teddy bear", True, (201, 57, 1)),
    ("hair drier", True, (246, 0, 122)),
    ("toothbrush", True, (191, 162, 208)),
    ("banner", False, (255, 255, 128)),
    ("blanket", False, (147, 211, 203)),
    ("bridge", False, (150, 100, 100)),
    ("cardboard", False, (168, 171, 172)),
    ("counter", False, (146, 112, 198)),
    ("curtain", False, (210, 170, 100)),
    ("door-stuff", False, (92, 136, 89)),
    ("floor-wood", False, (218, 88, 184)),
    ("flower", False, (241, 129, 0)),
    ("fruit", False, (217, 17, 255)),
    ("gravel", False, (124, 74, 181)),
    ("house", False, (70, 70, 70)),
    ("light", False, (255, 228, 255)),
    ("mirror-stuff", False, (154, 208, 0)),
    ("net", False, (193, 0, 92)),
    ("pillow", False, (76, 91, 113)),
    ("platform", False, (255, 180, 195)),
    ("playingfield", False, (106, 154, 176)),
    ("railroad", False, (230, 150, 140)),
    ("river", False, (60, 143, 255)),
    ("road", False, (128, 64, 128)),
    ("roof", False, (92, 82, 55)),
    ("sand", False, (254, 212, 124)),
    ("sea", False, (73, 77, 174)),
    ("shelf", False, (255, 160, 98)),
    ("snow", False, (255, 255, 255)),
    ("stairs", False, (104, 84, 109)),
    ("tent", False, (169, 164, 131)),
    ("towel", False, (225, 199, 255)),
    ("wall-brick", False, (137, 54, 74)),
    ("wall-stone", False, (135, 158, 223)),
    ("wall-tile", False, (7, 246, 231)),
    ("wall-wood", False, (107, 255, 200)),
    ("water-other", False, (58, 41, 149)),
    ("window-blind", False, (183, 121, 142)),
    ("window-other", False, (255, 73, 97)),
    ("tree-merged", False, (107, 142, 35)),
    ("fence-merged", False, (190, 153, 153)),
    ("ceiling-merged", False, (146, 139, 141)),
    ("sky-other-merged", False, (70, 130, 180)),
    ("cabinet-merged", False, (134, 199, 156)),
    ("table-merged", False, (209, 226, 140)),
    ("floor-other-merged", False, (96, 36, 108)),
    ("pavement-merged", False, (96, 96, 96)),
    ("mountain-merged", False, (64, 170, 64)),
    ("grass-merged", False, (152, 251, 152)),
    ("dirt-merged", False, (208, 229, 228)),
    ("paper-merged", False, (206, 186, 171)),
    ("food-other-merged", False, (152, 161, 64)),
    ("building-other-merged", False, (116, 112, 0)),
    ("rock-merged", False, (0, 114, 143)),
    ("wall-other-merged", False, (102, 102, 156)),
    ("rug-merged", False, (250, 141, 255)),
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

# Image datasets whose published kMaX-DeepLab weights (DeepLab2) our T=1 network runs.
COCO_PANOPTIC = DatasetDescriptor(
    name="coco_panoptic",
    class_names=tuple(name for name, _, _ in _COCO_PANOPTIC_CLASSES),
    thing_ids=tuple(i for i, (_, is_thing, _) in enumerate(_COCO_PANOPTIC_CLASSES) if is_thing),
    label_divisor=10000,  # room for the track ids of long videos
    ignore_label=255,
    colormap=tuple(color for _, _, color in _COCO_PANOPTIC_CLASSES),
    is_video=False,
)
CITYSCAPES = DatasetDescriptor(
    name="cityscapes",
    class_names=KITTI_STEP.class_names,
    thing_ids=tuple(range(11, 19)),  # person .. bicycle
    label_divisor=1000,
    ignore_label=255,
    colormap=KITTI_STEP.colormap,
    is_video=False,
)

DATASETS = {
    d.name: d for d in (KITTI_STEP, VIPSEG, CITYSCAPES_VPS, SYNTHETIC, COCO_PANOPTIC, CITYSCAPES)
}


def get_descriptor(name: str) -> DatasetDescriptor:
    """Returns the descriptor registered under `name`.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]
