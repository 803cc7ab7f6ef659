"""Evaluation metrics (torchmetrics) for the VPD perception tasks."""

from vpd_lightning.metrics.depth import DepthMetrics

__all__ = ["DepthMetrics"]
