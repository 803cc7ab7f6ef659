"""Lightning callbacks."""

from vpd_lightning.callbacks.last_checkpoint import LastCheckpoint
from vpd_lightning.callbacks.panels import PredictionPanels
from vpd_lightning.callbacks.summary import EpochLine, ValidationSummary
from vpd_lightning.callbacks.throughput import ImagesPerSecond

__all__ = ["EpochLine", "ImagesPerSecond", "LastCheckpoint", "PredictionPanels", "ValidationSummary"]
