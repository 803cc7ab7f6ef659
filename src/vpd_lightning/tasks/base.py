"""Shared LightningModule machinery of the VPD tasks: parameter groups, optimiser and schedule."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch import LightningModule

from vpd_lightning.backbone import DiffusionBackbone
from vpd_lightning.backbone.finetune import check_adapters

__all__ = ["VPDTask"]


class VPDTask(LightningModule):
    """Base of the task modules.

    Subclasses set ``monitor``/``mode`` and implement the steps. The optimiser is a partial (Hydra
    ``_partial_: true``) called with parameter groups built here:

    - parameters under ``backbone.unet.`` get ``lr x unet_lr_mult``;
    - 1-D parameters (norms, ``gamma``) and biases get no weight decay;
    - frozen parameters (VAE, the UNet's unused output head, what the ``finetune`` mode freezes) are left out;
      LoRA adapters live under ``backbone.unet.`` and so get the UNet's multiplier.

    Args:
        backbone: the shared :class:`DiffusionBackbone`.
        optimizer: partial optimiser, e.g. ``functools.partial(torch.optim.AdamW, lr=5e-4, weight_decay=0.1)``.
        scheduler: partial schedule called as ``scheduler(optimizer, total_steps=..., max_epochs=...,
            steps_per_epoch=...)`` and stepped every iteration; ``None`` for a constant lr.
        unet_lr_mult: UNet learning-rate multiplier.
    """

    monitor: str = "val/loss"
    mode: str = "min"
    #: metric names shown in the progress bar
    prog_bar_metrics: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: DiffusionBackbone,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        unet_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.unet_lr_mult = float(unet_lr_mult)

    def setup(self, stage: str) -> None:
        """Before the strategy wraps the model (DDP, FSDP): the head follows the backbone's memory format."""
        self.apply_memory_format()

    def apply_memory_format(self) -> VPDTask:
        """Hold every convolution weight (backbone and heads) in channels-last format when the backbone runs in it
        (``backbone.channels_last=true``); parameters keep their identity (optimisers, hooks stay valid)."""
        if getattr(self.backbone, "channels_last", False):
            self.to(memory_format=torch.channels_last)
        return self

    def parameter_groups(self) -> list[dict]:
        """Parameter groups with ``lr_scale`` and ``weight_decay`` set (see the class docstring)."""
        base = getattr(self.optimizer_factory, "keywords", {})
        lr = base.get("lr")
        weight_decay = base.get("weight_decay", 0.0)
        if lr is None:
            raise ValueError("model.optimizer must set lr (e.g. `lr: 5.0e-4`)")
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            groups.setdefault(self.lr_scale_and_decay(name, param), []).append(param)
        return [
            {
                "params": params,
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"x{scale:g}" + ("" if decay else "_no_wd"),  # LearningRateMonitor: lr-AdamW/x0.01
            }
            for (scale, decay), params in groups.items()
        ]

    def lr_scale_and_decay(self, name: str, param: torch.nn.Parameter) -> tuple[float, bool]:
        """Learning-rate multiplier and whether weight decay applies, for one trainable parameter.

        Default (VPD depth's ``LDMOptimizerConstructor``): UNet parameters at ``unet_lr_mult``; no decay for
        1-D parameters and biases. Tasks whose original recipe differs override this.
        """
        scale = self.unet_lr_mult if name.startswith("backbone.unet.") else 1.0
        return scale, not (param.ndim <= 1 or name.endswith(".bias"))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        trainer = self.trainer
        total = int(trainer.estimated_stepping_batches)
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        steps_per_epoch = None
        if max_epochs and trainer.max_steps in (-1, None):
            steps_per_epoch = max(total // max_epochs, 1)
        scheduler = self.scheduler_factory(
            optimizer, total_steps=total, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store what a checkpoint alone must bring back.

        - ``vpd_config``: the model description (set by ``train.build``) from which prediction and export
          rebuild the model (see :mod:`vpd_lightning.export`);
        - ``rng_states``: torch (CPU and CUDA), numpy and Python RNG states, so that a resumed run draws the
          same augmentations as an uninterrupted one (Lightning does not save them);
        - ``wandb_run_id``: the W&B run to continue when resuming.
        """
        config = getattr(self, "vpd_config", None)
        if config is not None:
            checkpoint["vpd_config"] = config
        checkpoint["rng_states"] = _rng_states()
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
                checkpoint["wandb_run_id"] = logger.version

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Check that the checkpoint and the model agree on LoRA adapters (any use); when a fit resumes (not
        when a checkpoint is only evaluated): restore the RNG states and keep the training loader's position
        for :meth:`on_train_start`."""
        state_dict = checkpoint.get("state_dict")
        trainer = self._trainer
        self._check_family(checkpoint, getattr(trainer, "ckpt_path", None) if trainer is not None else None)
        if state_dict is not None:  # before Lightning loads any weight: a LoRA/non-LoRA mismatch in one line
            where = getattr(trainer, "ckpt_path", None) if trainer is not None else None
            check_adapters(state_dict.keys(), self, where or "the checkpoint")
        states = checkpoint.get("rng_states")
        if trainer is None or trainer.state.fn != "fit":
            return
        if states is not None:
            _restore_rng_states(states)
        loops = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._loader_states = loops.get("combined_loader") or None

    def _check_family(self, checkpoint: dict, where: str | None) -> None:
        """A checkpoint of another backbone topology (its stored ``vpd_config``) is refused naming both families."""
        from vpd_lightning.backbone.families import FAMILIES
        from vpd_lightning.export import CheckpointError

        stored = ((checkpoint.get("vpd_config") or {}).get("backbone") or {}).get("family")
        mine = getattr(self.backbone, "family", None)
        if stored is None or mine is None or stored == mine:
            return
        if stored in FAMILIES and mine in FAMILIES and FAMILIES[stored].topology == FAMILIES[mine].topology:
            return  # sd21 <-> sd21_base: the same UNet
        raise CheckpointError(
            f"checkpoint '{where or 'the checkpoint'}' holds a backbone={stored} model, but this model is "
            f"backbone={mine}; use backbone={stored} (with {stored} weights in sd_path)"
        )

    def on_train_start(self) -> None:
        """Give the training loader its position within the epoch when resuming.

        Lightning restores loader states only if the loader was not built before the checkpoint was read; the
        schedule's ``estimated_stepping_batches`` builds it earlier, so the state is applied here (before the
        first batch is drawn; applying it twice is harmless).
        """
        states, self._loader_states = getattr(self, "_loader_states", None), None
        if not states:
            return
        loaders = self.trainer.train_dataloader
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        for loader, state in zip(loaders, states):
            if hasattr(loader, "load_state_dict"):
                loader.load_state_dict(state)

    # ------------------------------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict, metrics, batch_idx: int) -> None:
        """Predict with the task's test protocol and update ``metrics`` (implemented by each task)."""
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, batch_idx)

    def _log_metrics(self, metrics, stage: str) -> None:
        """Log every scalar of ``metrics.compute()`` as ``<stage>/<name>``, then reset the metric."""
        for name, value in metrics.compute().items():
            if value.ndim == 0:
                # already reduced over processes by the metric; sync_dist averages identical values (a no-op)
                self.log(f"{stage}/{name}", value.float(), prog_bar=name in self.prog_bar_metrics, sync_dist=True)
        self.on_metrics_computed(metrics, stage)
        metrics.reset()

    def on_metrics_computed(self, metrics, stage: str) -> None:
        """Hook after the metrics of a validation or test epoch are logged (e.g. per-class tables)."""

    def example_panels(self, attention: bool = True) -> dict:
        """Pictures of the first validation batch (``self.examples``) by name (``{"predictions": PIL image,
        "attention": ...}``); drawn by :class:`~vpd_lightning.callbacks.PredictionPanels`."""
        return {}

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")


def _rng_states() -> dict:
    """Lightning's RNG collection with numpy's state array as a tensor (loadable with ``weights_only=True``)."""
    states = _collect_rng_states()
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), gauss)
    return states


def _restore_rng_states(states: dict) -> None:
    states = dict(states)
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
    cuda = states.pop("torch.cuda", [])
    _set_rng_states(states)
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
