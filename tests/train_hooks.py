"""Test-only Lightning callbacks, added to a training subprocess with ``+callbacks.<name>._target_=train_hooks.X``
(the tests put this folder on the subprocess's PYTHONPATH)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig


class FailAt(L.Callback):
    """Raise ``RuntimeError('injected failure at step N')`` inside the training step after ``step`` optimizer steps
    (between the forward pass and the backward pass), in every job or only in multirun job ``job``."""

    def __init__(self, step: int = 0, job: int | None = None) -> None:
        self.step, self.job = step, job

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.job is not None and (not HydraConfig.initialized() or HydraConfig.get().job.num != self.job):
            return
        if trainer.global_step == self.step:
            raise RuntimeError(f"injected failure at step {self.step}")


class StepFile(L.Callback):
    """Write the number of optimizer steps done to ``path`` after each training batch (then sleep ``sleep_s``, so
    that a signal sent by the test lands while training is running)."""

    def __init__(self, path: str, sleep_s: float = 0.0) -> None:
        self.path, self.sleep_s = Path(path), sleep_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.path.write_text(str(trainer.global_step))
        time.sleep(self.sleep_s)


class RecordMicroBatches(L.Callback):
    """Record ``(task, images)`` of every call of a multi-task model's per-task ``training_loss`` (the micro-batches
    it backwards one at a time) in ``self.calls``, and the global step before each call in ``self.steps``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.steps: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        for task, sub in pl_module.tasks.items():
            original = sub.training_loss

            def spy(batch, task=task, original=original):
                self.calls.append((task, int(batch["image"].shape[0])))
                self.steps.append(trainer.global_step)
                return original(batch)

            sub.training_loss = spy
