"""The NYUv2, ADE20K and RefCOCO generators under their first name (they live in :mod:`vpd_lightning.data.synthetic`).

Every public name of the former one-file module is here, and the command line works as before::

    python -m vpd_lightning.data.generate nyuv2 --root DIR [--num-train N --num-test N
                                                            --height H --width W --seed S]
    python -m vpd_lightning.data.generate ade20k --root DIR [--num-train N --num-val N
                                                             --height H --width W --seed S
                                                             --class-ids ID ...]
    python -m vpd_lightning.data.generate refcoco --root DIR [--dataset {refcoco,refcoco+,refcocog}
                                                              --split-by {unc,google,umd}
                                                              --num-images N --height H --width W
                                                              --seed S]
"""

import sys

from vpd_lightning.data.synthetic.ade20k import (
    ADE20K_CLASSES,
    ADE20K_DEFAULT_CLASS_IDS,
    ADE20K_NUM_CLASSES,
    generate_ade20k,
    render_ade_scene,
)
from vpd_lightning.data.synthetic.cli import build_parser, main
from vpd_lightning.data.synthetic.nyuv2 import (
    NYU_DEFAULT_SCENES,
    NYU_FOCAL_LENGTH,
    NYU_MAX_DEPTH,
    NYU_MIN_DEPTH,
    NYU_SCENE_CLASSES,
    generate_nyuv2,
    render_room,
)
from vpd_lightning.data.synthetic.refcoco import (
    REFCOCO_CATEGORIES,
    REFCOCO_COLOURS,
    REFCOCO_DATASETS,
    REFCOCO_DEFAULT_SPLIT_BY,
    REFCOCO_SHAPE_CATEGORY,
    REFCOCO_SHAPE_WORDS,
    REFCOCO_SHAPES,
    REFCOCO_SPLIT_BYS,
    REFCOCO_SPLITS,
    generate_refcoco,
    render_refcoco_image,
)

__all__ = [
    "NYU_SCENE_CLASSES",
    "NYU_DEFAULT_SCENES",
    "NYU_FOCAL_LENGTH",
    "NYU_MIN_DEPTH",
    "NYU_MAX_DEPTH",
    "generate_nyuv2",
    "render_room",
    "ADE20K_CLASSES",
    "ADE20K_NUM_CLASSES",
    "ADE20K_DEFAULT_CLASS_IDS",
    "generate_ade20k",
    "render_ade_scene",
    "REFCOCO_DATASETS",
    "REFCOCO_SPLIT_BYS",
    "REFCOCO_DEFAULT_SPLIT_BY",
    "REFCOCO_SPLITS",
    "REFCOCO_COLOURS",
    "REFCOCO_SHAPES",
    "REFCOCO_CATEGORIES",
    "REFCOCO_SHAPE_CATEGORY",
    "REFCOCO_SHAPE_WORDS",
    "generate_refcoco",
    "render_refcoco_image",
    "build_parser",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
