"""One LightningModule per VPD task."""

from vpd_lightning.tasks.base import VPDTask
from vpd_lightning.tasks.depth import DepthEstimationTask
from vpd_lightning.tasks.referring import ReferringSegmentationTask
from vpd_lightning.tasks.segmentation import SemanticSegmentationTask

__all__ = ["DepthEstimationTask", "ReferringSegmentationTask", "SemanticSegmentationTask", "VPDTask"]
