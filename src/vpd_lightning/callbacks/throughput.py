"""Training throughput in images per second, and where a step's time goes (waiting for data vs computing)."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["ImagesPerSecond"]


class ImagesPerSecond(Callback):
    """Log ``train/images_per_s``, ``train/data_wait_s`` and ``train/step_s``.

    - ``images_per_s``: images of the global batch (all processes) per second of wall time between consecutive
      training batches, so data loading, forward, backward and the optimiser step are included;
    - ``data_wait_s``: seconds from the end of one training batch to the start of the next, i.e. how long the
      loop waited for the loader (and the host-to-device copy). Near zero when the workers keep up; a loader
      that is too slow (too few ``data.num_workers``, slow disk) shows here, not in ``step_s``;
    - ``step_s``: seconds from the start to the end of a training batch: forward, backward and optimiser step
      (on a GPU the device is synchronised at the end, so queued kernels count here and not as data wait).

    The first batch after a (re)start or a validation is skipped for ``images_per_s`` and ``data_wait_s``
    (warm-up, validation time).

    Args:
        prog_bar: also show ``images_per_s`` in the progress bar.
    """

    def __init__(self, prog_bar: bool = False) -> None:
        self.prog_bar = prog_bar
        self._last: float | None = None
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()
        if self._last is not None:
            self._log(pl_module, "train/data_wait_s", self._start - self._last)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        device = getattr(pl_module, "device", None)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if self._start is not None:
            self._log(pl_module, "train/step_s", now - self._start)
        if self._last is not None and now > self._last:
            images = _batch_size(batch) * trainer.world_size
            self._log(pl_module, "train/images_per_s", images / (now - self._last), prog_bar=self.prog_bar)
        self._last = now

    @staticmethod
    def _log(pl_module: LightningModule, name: str, value: float, prog_bar: bool = False) -> None:
        pl_module.log(name, value, on_step=True, prog_bar=prog_bar, batch_size=1, rank_zero_only=True)


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        image = batch.get("image")
        if isinstance(image, torch.Tensor):
            return int(image.shape[0])
        tasks = [v for v in batch.values() if isinstance(v, dict)]
        if tasks:  # a multi-task step ({task: batch}): the images of every task
            return sum(_batch_size(v) for v in tasks)
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, torch.Tensor):
                return int(item.shape[0])
    raise TypeError("ImagesPerSecond: cannot tell the batch size (expected a dict with an 'image' tensor)")
