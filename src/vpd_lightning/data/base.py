"""What the data modules share: loaders built from ``train_set`` / ``val_set`` / ``test_set``."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from vpd_lightning.data.sampling import ResumableDataLoader, SeededDataset, VPDSampler

__all__ = ["VPDDataModule"]


class VPDDataModule(LightningDataModule):
    """Base of the data modules: subclasses build ``train_set``, ``val_set`` and ``test_set`` in ``setup``.

    Reads ``batch_size``, ``num_workers``, ``pin_memory`` and (optionally) ``persistent_workers``,
    ``prefetch_factor``, ``eval_batch_size`` and ``sample_seeding`` from ``self.hparams``. Training shuffles and
    drops the last incomplete batch; evaluation does neither. Loaders come from :mod:`vpd_lightning.data.sampling`
    (process split, mid-epoch resume).
    """

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        """Training (``shuffle``): a seeded permutation per epoch split across processes, last incomplete batch
        dropped, resumable mid-epoch. Evaluation: file order, split across processes without padding."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = torch.initial_seed() % 2**31
        seeded = shuffle and self.hparams.get("sample_seeding", False)
        if seeded:
            dataset = SeededDataset(dataset, seed)
        sampler = VPDSampler(
            dataset,
            shuffle=shuffle,
            seed=seed,
            drop_last=shuffle,
            pad=shuffle,
            keys=seeded,
            num_replicas=world,
            rank=rank,
        )
        return ResumableDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            **self.loader_options(),
            # its own generator: creating an iterator draws a worker base seed, which must not move the
            # global RNG (the augmentations' stream) differently in a resumed run
            generator=torch.Generator().manual_seed(seed + rank),
        )

    def loader_options(self) -> dict:
        """Worker settings of every loader, from ``num_workers``, ``pin_memory``, ``persistent_workers`` and
        ``prefetch_factor``: workers decode and augment the next batches while the model computes (visible as
        ``train/data_wait_s`` near zero); pinned memory only where CUDA is there to copy from it."""
        hp = self.hparams
        workers = int(hp.num_workers)
        if workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {workers}")
        prefetch = hp.get("prefetch_factor")
        if prefetch is not None and (workers == 0 or int(prefetch) < 1):
            raise ValueError(f"data.prefetch_factor must be null or >= 1 with data.num_workers > 0, got {prefetch}")
        options = {
            "num_workers": workers,
            "pin_memory": bool(hp.get("pin_memory", True)) and torch.cuda.is_available(),
            "persistent_workers": bool(hp.get("persistent_workers", True)) and workers > 0,
        }
        if prefetch is not None:
            options["prefetch_factor"] = int(prefetch)
        return options

    def state_dict(self) -> dict:
        """Saved in checkpoints: dataset counters that shape the augmentation (NYUv2's every-4th CutDepth)."""
        count = getattr(self.train_set, "_count", None)
        return {} if count is None else {"train_count": int(count)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored_count = state_dict.get("train_count")
        if self._restored_count is not None and self.train_set is not None:
            self.train_set._count = int(self._restored_count)

    @property
    def eval_batch_size(self) -> int:
        return self.hparams.get("eval_batch_size", 1)

    def train_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """The training loader; ``batch_size`` replaces ``hparams.batch_size`` (the multi-task data module asks
        for micro-batch x accumulation images per step)."""
        count = getattr(self, "_restored_count", None)
        if count is not None and self.train_set is not None:  # restored from a checkpoint before setup()
            self.train_set._count, self._restored_count = int(count), None
        return self._loader(self.train_set, batch_size or self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set if self.test_set is not None else self.val_set, self.eval_batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
