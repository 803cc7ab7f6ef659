"""One line per validation summarising the metrics that matter."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ValidationSummary"]


class ValidationSummary(Callback):
    """Print ``epoch N step S | val/rmse 0.412 | val/d1 0.871 ...`` after each validation (rank zero)."""

    def __init__(self, keys: tuple[str, ...] | None = None) -> None:
        self.keys = keys

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        keys = self.keys or sorted(metrics)
        parts = [f"{k} {metrics[k]:.4f}" for k in keys if k in metrics]
        if parts:
            rank_zero_info(f"epoch {trainer.current_epoch} step {trainer.global_step} | " + " | ".join(parts))
