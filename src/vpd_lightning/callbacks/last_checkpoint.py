"""``last.ckpt`` every N steps, and at the current step when training is stopped by a signal or an error."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vpd_lightning.tasks.base import _restore_rng_states, _rng_states

__all__ = ["LastCheckpoint"]

log = logging.getLogger(__name__)


@dataclass
class _StepBoundary:
    """What a checkpoint written later must hold to resume as if it had been written at this step boundary."""

    global_step: int
    rng_states: dict
    fit_loop: dict  # progress counters and the training loaders' positions
    datamodule: dict  # e.g. NYUv2's CutDepth counter
    buffers: dict[str, torch.Tensor]  # batch norm statistics: a forward pass updates them


class LastCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` for ``last.ckpt`` that also writes it when a fit is stopped before its end.

    Stopped by SIGTERM (what schedulers and SLURM send before killing; Lightning stops at the next step
    boundary), by Ctrl+C (``KeyboardInterrupt``) or by an exception (in a training step, the data, a callback or
    validation), it writes ``last.ckpt`` at the last completed optimizer step and logs that step and the path. The
    exception itself is then raised as before (the process exits non-zero with the original error); a failure to
    write the checkpoint is logged and never replaces it.

    The checkpoint resumes exactly like an interval checkpoint: its loop progress, training loaders' positions,
    data module state, model buffers (batch norm statistics) and RNG states are the ones of the last step
    boundary (the end of the last training batch, or of the validation after it), the state an interval
    checkpoint written there would hold, so the batch that was interrupted is drawn again, with the same
    augmentations. When the stop came inside an optimizer step (after ``on_before_optimizer_step``, the weights
    may be half-updated) nothing is written and the previous ``last.ckpt`` stays. With gradient accumulation,
    the gradients accumulated since the last optimizer step are not kept (as with any checkpoint).

    Several processes (DDP, FSDP): SIGTERM reaches every process at the same step (Lightning broadcasts it), so
    all of them take part in the save as in any checkpoint. An exception may hit one process only while the
    others wait in a collective operation, so no collective is started: with DDP (every process holds the whole
    state) process 0 writes the checkpoint alone if it is the one that failed; otherwise, and with sharded
    strategies, nothing is written and the message says so.
    """

    def __init__(self, *args: Any, save_on_stop: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.save_on_stop = save_on_stop
        self._boundary: _StepBoundary | None = None
        self._in_optimizer_step = False
        self._rewind: _StepBoundary | None = None

    # -- step boundaries ------------------------------------------------------------------------------------
    def _mark_boundary(self, trainer: L.Trainer) -> None:
        if not self.save_on_stop or trainer.sanity_checking:
            return
        datamodule = trainer.datamodule.state_dict() if trainer.datamodule is not None else {}
        fit_loop = copy.deepcopy(trainer.fit_loop.state_dict())
        buffers = {name: b.detach().clone() for name, b in trainer.lightning_module.named_buffers()}
        self._boundary = _StepBoundary(trainer.global_step, _rng_states(), fit_loop, copy.deepcopy(datamodule), buffers)
        self._in_optimizer_step = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._in_optimizer_step = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        self._mark_boundary(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and self._boundary is not None:
            self._mark_boundary(trainer)  # validation draws from the RNG (loader seeds): resume after it

    # -- stops ----------------------------------------------------------------------------------------------
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.save_on_stop or trainer.state.fn != "fit" or trainer.sanity_checking or trainer.fast_dev_run:
            return
        reason = _reason(exception)
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        boundary = self._boundary
        if boundary is None:
            log.warning("training stopped by %s before a step completed; nothing new to save in %s", reason, path)
            return
        if self._in_optimizer_step or boundary.global_step != trainer.global_step:
            log.warning(
                "training stopped by %s inside the optimizer step after step %d (weights may be half-updated): "
                "%s not written, the previous one stays",
                reason,
                boundary.global_step,
                path,
            )
            return
        every_process = isinstance(exception, SIGTERMException) or trainer.world_size == 1
        if not every_process and not _replicated(trainer.strategy):
            log.warning("training stopped by %s on one process of a sharded run: %s not written", reason, path)
            return
        try:
            _restore_rng_states(boundary.rng_states)
            _restore_buffers(trainer.lightning_module, boundary.buffers)
            self._rewind = boundary
            if every_process:
                trainer.save_checkpoint(path)
            elif trainer.is_global_zero:  # no barrier: the other processes may be stuck in a collective
                trainer.strategy.checkpoint_io.save_checkpoint(
                    trainer._checkpoint_connector.dump_checkpoint(weights_only=False), path
                )
            else:
                return
        except Exception as err:  # the original exception matters more than a failed save
            log.error(
                "training stopped by %s at step %d; saving %s failed: %r", reason, boundary.global_step, path, err
            )
            return
        finally:
            self._rewind = None
        if trainer.is_global_zero:
            log.warning(
                "training stopped at step %d by %s; saved %s (step %d). Resume from it with ckpt_path=%s (or "
                "ckpt_path=last / auto_resume=true with the same output folder).",
                boundary.global_step,
                reason,
                path,
                boundary.global_step,
                path,
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """A checkpoint written on a stop: loops and data module as at the last step boundary (the interrupted
        batch was drawn already, and counted)."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._rewind is not None:
            checkpoint["loops"]["fit_loop"] = self._rewind.fit_loop
            if self._rewind.datamodule:
                checkpoint[type(trainer.datamodule).__qualname__] = self._rewind.datamodule


@torch.no_grad()
def _restore_buffers(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, buffer in module.named_buffers():
        if name in saved and saved[name].shape == buffer.shape:
            buffer.copy_(saved[name])


def _reason(exception: BaseException) -> str:
    if isinstance(exception, SIGTERMException):
        return "SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return "KeyboardInterrupt (Ctrl+C)"
    message = str(exception).strip().splitlines()
    return f"{type(exception).__name__}: {message[0][:200] if message else ''}"


def _replicated(strategy) -> bool:
    """Every process holds the whole model and optimizer state (so one process can write a checkpoint)."""
    if isinstance(strategy, SingleDeviceStrategy):
        return True
    return isinstance(strategy, DDPStrategy) and "DeepSpeed" not in type(strategy).__name__
