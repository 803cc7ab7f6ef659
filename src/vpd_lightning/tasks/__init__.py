"""One LightningModule per VPD task."""

from vpd_lightning.tasks.base import VPDTask
from vpd_lightning.tasks.depth import DepthEstimationTask

__all__ = ["DepthEstimationTask", "VPDTask"]
