"""One LightningModule per VPD task, and the multi-task model that trains several on one backbone."""

from vpd_lightning.tasks.base import VPDTask
from vpd_lightning.tasks.depth import DepthEstimationTask
from vpd_lightning.tasks.multitask import MultiTaskModel
from vpd_lightning.tasks.referring import ReferringSegmentationTask
from vpd_lightning.tasks.segmentation import SemanticSegmentationTask

__all__ = ["DepthEstimationTask", "MultiTaskModel", "ReferringSegmentationTask", "SemanticSegmentationTask", "VPDTask"]
