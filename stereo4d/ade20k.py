"""ADE20K class ids (SceneParsing, 150 classes plus "other" = 0) and the class sets filtering uses.

Label maps everywhere in the pipeline hold these ids (int32 [T, H, W]). The DeepLabv3
ADE20K model predicts them directly: its output index i is ADE20K class i, with 0 the
"other / unlabelled" class (the reference looks names up in a 151-entry list starting at
"background", so sky is 3, not 2). The weight-free segmenter writes the same ids.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BUILDING",
    "CAR",
    "CLASS_NAMES",
    "EARTH",
    "FLOOR",
    "GRASS",
    "OTHER",
    "PERSON",
    "ROAD",
    "SIDEWALK",
    "SKY",
    "SKY_CLASS_IDS",
    "STATIC_CLASS_IDS",
    "TREE",
    "WALL",
    "class_id",
    "is_sky",
    "is_static",
]

#: Short names of the ADE20K SceneParsing classes, indexed by id (0 = other / unlabelled).
CLASS_NAMES: tuple[str, ...] = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest", "counter", "sand",
    "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway",
    "case", "pool", "pillow", "screen", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen", "computer", "swivel", "boat", "bar", "arcade", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television", "airplane",
    "dirt", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer", "canopy", "washer", "plaything",
    "swimming", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen2", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic", "tray", "ashcan", "fan", "pier", "crt", "plate", "monitor", "bulletin", "shower",
    "radiator", "glass", "clock", "flag",
)
NUM_CLASSES = len(CLASS_NAMES)  # 151


def class_id(name: str) -> int:
    """Id of an ADE20K class by its short name (``ValueError`` if unknown)."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown ADE20K class {name!r}") from None


OTHER = 0
WALL = class_id("wall")  # 1
BUILDING = class_id("building")  # 2
SKY = class_id("sky")  # 3
FLOOR = class_id("floor")  # 4
TREE = class_id("tree")  # 5
ROAD = class_id("road")  # 7
GRASS = class_id("grass")  # 10
SIDEWALK = class_id("sidewalk")  # 12
PERSON = class_id("person")  # 13
EARTH = class_id("earth")  # 14
CAR = class_id("car")  # 21

#: Classes whose tracks should not move: large, often textureless surfaces where 2D
#: trackers drift (the reference's ``building, road, earth, sidewalk, wall``).
STATIC_CLASS_IDS: tuple[int, ...] = (BUILDING, ROAD, EARTH, SIDEWALK, WALL)
#: Classes with no usable depth; every track touching them is dropped.
SKY_CLASS_IDS: tuple[int, ...] = (SKY,)


def is_static(labels: np.ndarray) -> np.ndarray:
    """Bool mask (same shape as ``labels``) of the static classes."""
    return np.isin(labels, STATIC_CLASS_IDS)


def is_sky(labels: np.ndarray) -> np.ndarray:
    """Bool mask (same shape as ``labels``) of the sky classes."""
    return np.isin(labels, SKY_CLASS_IDS)
