"""Training throughput in images per second."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["ImagesPerSecond"]


class ImagesPerSecond(Callback):
    """Log ``train/images_per_s``: images of the global batch (all processes) per second of wall time.

    Measured between consecutive training batches, so data loading, forward, backward and the optimiser step
    are included; the first batch after a (re)start or a validation is skipped (warm-up, validation time).

    Args:
        prog_bar: also show it in the progress bar.
    """

    def __init__(self, prog_bar: bool = False) -> None:
        self.prog_bar = prog_bar
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            images = _batch_size(batch) * trainer.world_size
            pl_module.log(
                "train/images_per_s",
                images / (now - self._last),
                on_step=True,
                prog_bar=self.prog_bar,
                batch_size=1,
                rank_zero_only=True,
            )
        self._last = now


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        image = batch.get("image")
        if isinstance(image, torch.Tensor):
            return int(image.shape[0])
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, torch.Tensor):
                return int(item.shape[0])
    raise TypeError("ImagesPerSecond: cannot tell the batch size (expected a dict with an 'image' tensor)")
