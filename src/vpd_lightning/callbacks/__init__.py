"""Lightning callbacks."""

from vpd_lightning.callbacks.last_checkpoint import LastCheckpoint
from vpd_lightning.callbacks.panels import PredictionPanels
from vpd_lightning.callbacks.summary import ValidationSummary
from vpd_lightning.callbacks.throughput import ImagesPerSecond

__all__ = ["ImagesPerSecond", "LastCheckpoint", "PredictionPanels", "ValidationSummary"]
