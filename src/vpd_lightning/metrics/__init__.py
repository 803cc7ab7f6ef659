"""Evaluation metrics (torchmetrics) for the VPD perception tasks."""

from vpd_lightning.metrics.depth import DepthMetrics
from vpd_lightning.metrics.referring import ReferringMetrics
from vpd_lightning.metrics.segmentation import SegmentationMetrics

__all__ = ["DepthMetrics", "ReferringMetrics", "SegmentationMetrics"]
