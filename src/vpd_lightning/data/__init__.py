"""Data sets in their real on-disk layouts, their LightningDataModules, and generators of small look-alikes."""

from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.nyuv2 import NYU_SCENE_CLASSES, NYUv2DataModule, NYUv2Dataset, scene_class_id

__all__ = [
    "NYU_SCENE_CLASSES",
    "DataFormatError",
    "DatasetNotFoundError",
    "NYUv2DataModule",
    "NYUv2Dataset",
    "scene_class_id",
]
