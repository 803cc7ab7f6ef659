"""Data sets in their real on-disk layouts, their LightningDataModules, and generators of small look-alikes."""

from vpd_lightning.data.ade20k import ADE20K_CLASSES, ADE20KDataModule, ADE20KDataset, SegmentationFolderDataset
from vpd_lightning.data.cityscapes import CITYSCAPES_CLASSES, CityscapesDataModule
from vpd_lightning.data.depth_folder import DepthFolderDataModule, DepthPairsDataset
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.kitti import KITTI_SCENE_CLASSES, KITTIDataModule, KITTIDataset
from vpd_lightning.data.multitask import MultiTaskDataModule
from vpd_lightning.data.nyuv2 import NYU_SCENE_CLASSES, NYUv2DataModule, NYUv2Dataset, scene_class_id
from vpd_lightning.data.refcoco import REFER_SPLITS, RefCOCODataModule, RefCOCODataset, decode_mask
from vpd_lightning.data.referring_folder import ReferringFolderDataModule, ReferringFolderDataset
from vpd_lightning.data.voc import VOC_CLASSES, VOCDataModule

__all__ = [
    "ADE20K_CLASSES",
    "NYU_SCENE_CLASSES",
    "ADE20KDataModule",
    "CITYSCAPES_CLASSES",
    "CityscapesDataModule",
    "ADE20KDataset",
    "DataFormatError",
    "DepthFolderDataModule",
    "DepthPairsDataset",
    "DatasetNotFoundError",
    "MultiTaskDataModule",
    "KITTI_SCENE_CLASSES",
    "KITTIDataModule",
    "KITTIDataset",
    "NYUv2DataModule",
    "NYUv2Dataset",
    "REFER_SPLITS",
    "RefCOCODataModule",
    "RefCOCODataset",
    "ReferringFolderDataModule",
    "ReferringFolderDataset",
    "SegmentationFolderDataset",
    "VOC_CLASSES",
    "VOCDataModule",
    "decode_mask",
    "scene_class_id",
]
