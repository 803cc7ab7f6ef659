"""One line per validation (or per epoch) summarising the metrics that matter."""

from __future__ import annotations

import time

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["EpochLine", "ValidationSummary"]


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


class EpochLine(Callback):
    """One printed line per training epoch: ``epoch 3/6 | step 36 | train/loss 0.41 | val/rmse 0.39 ... | 14 s``.

    For output that is not a terminal (a log file, a pipe, CI), where a progress bar is one endless line of
    carriage returns: the run shows where it is, flushed at once. Validation at the end of an epoch is already
    in the line (Lightning runs it before ``on_train_epoch_end``).
    """

    def __init__(self, keys: tuple[str, ...] | None = None) -> None:
        self.keys = keys
        self.start = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = time.time()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = getattr(pl_module, "prog_bar_metrics", ())  # the task's headline metrics (rmse, d1; miou ...)
        val = [f"val/{k}" for k in shown] or sorted(k for k in metrics if k.startswith("val/"))
        keys = self.keys or ["train/loss", *val]
        parts = [f"{k} {metrics[k]:.4f}" for k in keys if k in metrics]
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        line = " | ".join([f"epoch {trainer.current_epoch + 1}{total}", f"step {trainer.global_step}", *parts])
        print(f"{line} | {time.time() - self.start:.0f} s", flush=True)
