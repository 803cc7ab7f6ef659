"""Several tasks' data modules behind one: training batches combined with Lightning's ``CombinedLoader``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader

from vpd_lightning.utils.errors import ConfigError

__all__ = ["COMBINE_MODES", "KNOWN_TASKS", "MultiTaskDataModule", "check_accumulate", "check_task_list"]

#: the tasks a multi-task run can train, in their canonical order
KNOWN_TASKS = ("depth", "segmentation", "referring")
#: ``CombinedLoader`` modes for training (``sequential`` is for evaluation only)
COMBINE_MODES = ("max_size_cycle", "max_size", "min_size")


def check_task_list(tasks: Any, option: str = "multitask.tasks") -> list[str]:
    """The task names of ``tasks`` as a list; :class:`ConfigError` (one line, naming the known tasks) when it is
    empty, holds an unknown name or names a task twice."""
    if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
        raise ConfigError(f"{option} must be a non-empty list of tasks from {list(KNOWN_TASKS)}, got {tasks!r}")
    names = [str(t) for t in tasks]
    for name in names:
        if name not in KNOWN_TASKS:
            raise ConfigError(f"{option}: unknown task '{name}'; the tasks are {', '.join(KNOWN_TASKS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"{option}: task '{twice[0]}' is listed twice in {names}; list each of {', '.join(KNOWN_TASKS)} once"
        )
    return names


def check_accumulate(accumulate: Any, tasks: Sequence[str], option: str = "multitask.accumulate") -> dict[str, int]:
    """``{task: micro-batches per step}`` for every task of ``tasks`` (1 where not given). Entries of known tasks
    that are not trained are ignored (a ``memory=`` preset lists every task); :class:`ConfigError` (one line) for an
    unknown task or a trained task's value that is not an integer >= 1 (``null``: a preset's table lacks it)."""
    given = dict(accumulate or {})
    for key in given:
        if key not in KNOWN_TASKS:
            raise ConfigError(f"{option}: unknown task '{key}'; the tasks are {', '.join(KNOWN_TASKS)}")
    result = {}
    for task in tasks:
        value = given.get(task, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{option}.{task} must be an integer >= 1, got {value!r} (the trained tasks are {', '.join(tasks)})"
            )
        result[task] = value
    return result


class MultiTaskDataModule(LightningDataModule):
    """One data module per task, built from its config only for the tasks trained.

    Training: a :class:`~lightning.pytorch.utilities.CombinedLoader` over ``{task: train loader}`` (in the
    order of ``tasks``), so each step holds one batch of every task; ``mode`` says how loaders of different
    lengths combine (``max_size_cycle``: an epoch is the longest loader, shorter ones restart; ``min_size``: the
    shortest; ``max_size``: the longest, exhausted tasks give ``None`` and sit the rest of the epoch out).
    Validation and test: one loader per task, in ``tasks`` order (``dataloader_idx`` = position in ``tasks``).

    Args:
        tasks: the trained tasks, e.g. ``["depth", "segmentation"]``.
        mode: the training ``CombinedLoader`` mode.
        accumulate: ``{task: N}``: the task's training batches hold N x its ``batch_size`` images, which the model
            runs as N micro-batches of ``batch_size`` (:class:`~vpd_lightning.tasks.MultiTaskModel`); default 1.
        depth, segmentation, referring: each task's data module, or its Hydra config (instantiated here, only
            when the task is trained).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        mode: str = "max_size_cycle",
        depth: Any = None,
        segmentation: Any = None,
        referring: Any = None,
        accumulate: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = check_task_list(tasks)
        self.accumulate = check_accumulate(accumulate, self.tasks)
        if mode not in COMBINE_MODES:
            raise ConfigError(f"multitask.mode must be one of {list(COMBINE_MODES)}, got '{mode}'")
        self.mode = mode
        given = {"depth": depth, "segmentation": segmentation, "referring": referring}
        missing = [t for t in self.tasks if given[t] is None]
        if missing:
            have = [t for t, v in given.items() if v is not None]
            raise ConfigError(
                f"multitask.tasks lists '{missing[0]}' but data.{missing[0]} is missing; data modules are given for: "
                f"{', '.join(have) or 'none'}"
            )
        self.modules: dict[str, LightningDataModule] = {t: _build(given[t]) for t in self.tasks}

    # ------------------------------------------------------------------------------------------ helpers
    def _sync(self) -> None:
        trainer = getattr(self, "trainer", None)
        for module in self.modules.values():
            module.trainer = trainer

    @property
    def tokenizer(self):
        """The referring data module's CLIP tokenizer (``None`` without referring)."""
        module = self.modules.get("referring")
        return getattr(module, "tokenizer", None)

    def train_sizes(self) -> dict[str, int]:
        """Training samples per task (after ``setup``)."""
        return {t: len(m.train_set) for t, m in self.modules.items() if getattr(m, "train_set", None) is not None}

    # ------------------------------------------------------------------------------------------ lightning
    def prepare_data(self) -> None:
        for module in self.modules.values():
            module.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self._sync()
        for module in self.modules.values():
            module.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        self._sync()
        loaders = {}
        for task, module in self.modules.items():
            n = self.accumulate[task]
            if n == 1:
                loaders[task] = module.train_dataloader()
                continue
            batch_size = module.hparams.get("batch_size") if hasattr(module, "hparams") else None
            if batch_size is None:
                raise ConfigError(f"multitask.accumulate.{task}={n} needs data.{task}.batch_size (the micro-batch)")
            loaders[task] = module.train_dataloader(batch_size=int(batch_size) * n)
        return CombinedLoader(loaders, mode=self.mode)

    def val_dataloader(self) -> list:
        self._sync()
        return [m.val_dataloader() for m in self.modules.values()]

    def test_dataloader(self) -> list:
        self._sync()
        return [m.test_dataloader() for m in self.modules.values()]

    def state_dict(self) -> dict:
        return {t: m.state_dict() for t, m in self.modules.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        for t, m in self.modules.items():
            if t in state_dict:
                m.load_state_dict(state_dict[t])


def _build(config: Any) -> LightningDataModule:
    if isinstance(config, LightningDataModule):
        return config
    from hydra.utils import instantiate

    return instantiate(config, _convert_="all")
