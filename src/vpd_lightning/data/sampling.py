"""Samplers and loaders that split data across processes, resume mid-epoch and (optionally) seed per sample.

- :class:`VPDSampler` is a :class:`~torch.utils.data.DistributedSampler` (Lightning leaves it in place): the
  training order is a permutation seeded by ``seed + epoch`` and split round-robin across processes, so one
  process with batch ``4`` and two processes with batch ``2`` see the same global batches. Evaluation splits
  without padding: every image is evaluated exactly once, whatever the number of processes.
- :class:`ResumableDataLoader` reports how far into the epoch it is (``state_dict``, saved by Lightning in each
  checkpoint) and skips that many samples when a run resumes from a mid-epoch checkpoint.
- :class:`SeededDataset` (``data.sample_seeding=true``) draws each sample's augmentation from a generator seeded
  by ``(seed, epoch, index)``: the same augmentations for any number of processes or workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ResumableDataLoader", "SeededDataset", "VPDSampler"]


class VPDSampler(DistributedSampler):
    """Indices for one process (``rank`` of ``num_replicas``).

    Args:
        dataset: the data set (only its length is used).
        shuffle: training order (a permutation per epoch, ``seed + epoch``) or file order.
        seed: the permutation seed (the run's seed).
        drop_last: drop the tail that does not divide evenly across processes (training).
        pad: ``False`` gives an unpadded round-robin split (evaluation: no image counted twice).
        keys: yield ``epoch * len(dataset) + index`` (read by :class:`SeededDataset`) instead of ``index``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        pad: bool = True,
        keys: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.pad = pad
        self.keys = keys
        self.resume_epoch: int | None = None
        self.resume_offset = 0

    def indices(self) -> list[int]:
        """This process's indices of the current epoch, before any resume offset."""
        n = len(self.dataset)
        if self.pad:
            return list(super().__iter__())
        return list(range(n))[self.rank :: self.num_replicas]

    def start(self) -> int:
        """How many of this epoch's indices a resumed run skips."""
        return self.resume_offset if self.resume_epoch == self.epoch else 0

    def __iter__(self) -> Iterator[int]:
        indices = self.indices()[self.start() :]
        self.resume_epoch, self.resume_offset = None, 0
        if self.keys:
            n = len(self.dataset)
            indices = [self.epoch * n + i for i in indices]
        return iter(indices)

    def __len__(self) -> int:
        if self.pad:
            return super().__len__()
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`VPDSampler` whose position within the epoch survives a checkpoint.

    Lightning stores ``state_dict()`` in the checkpoint (``loops.fit_loop.state_dict.combined_loader``) and
    calls ``load_state_dict`` before iterating again; the sampler then skips the samples already trained on.
    """

    def __iter__(self):
        sampler = self.sampler
        if not isinstance(sampler, VPDSampler):
            yield from super().__iter__()
            return
        # runs at the first next(), after Lightning's set_epoch
        self._epoch = sampler.epoch
        self._consumed = sampler.start()
        for batch in super().__iter__():
            self._consumed += self.batch_size
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": getattr(self, "_epoch", 0), "consumed": getattr(self, "_consumed", 0)}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.sampler, VPDSampler):
            self.sampler.resume_epoch = int(state.get("epoch", 0))
            self.sampler.resume_offset = int(state.get("consumed", 0))


class SeededDataset(Dataset):
    """``dataset[index]`` with torch's RNG seeded by ``(seed, epoch, index)`` (keys from :class:`VPDSampler`).

    The global RNG is restored afterwards (``torch.random.fork_rng``), so nothing else is disturbed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_seed(self, key: int) -> int:
        epoch, index = divmod(int(key), len(self.dataset))
        digest = hashlib.blake2b(f"{self.seed}:{epoch}:{index}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & (2**63 - 1)

    def __getitem__(self, key: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.sample_seed(key))
            return self.dataset[int(key) % len(self.dataset)]

    def __getattr__(self, name: str):  # dataset attributes (class_names, ...) stay reachable
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
