"""Lightning callbacks."""

from vpd_lightning.callbacks.summary import ValidationSummary

__all__ = ["ValidationSummary"]
