"""What the data modules share: loaders built from ``train_set`` / ``val_set`` / ``test_set``."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

__all__ = ["VPDDataModule"]


class VPDDataModule(LightningDataModule):
    """Base of the data modules: subclasses build ``train_set``, ``val_set`` and ``test_set`` in ``setup``.

    Reads ``batch_size``, ``num_workers``, ``pin_memory`` and (optionally) ``eval_batch_size`` from
    ``self.hparams``. Training shuffles and drops the last incomplete batch; evaluation does neither.
    """

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )

    @property
    def eval_batch_size(self) -> int:
        return self.hparams.get("eval_batch_size", 1)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set if self.test_set is not None else self.val_set, self.eval_batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
