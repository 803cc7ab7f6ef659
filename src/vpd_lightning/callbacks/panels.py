"""Pictures and tables of each validation, to Weights & Biases, TensorBoard or disk."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["PredictionPanels"]


class PredictionPanels(Callback):
    """After every ``every_n_validations``-th validation, draw the task's panels and per-class table.

    Panels come from ``pl_module.example_panels()`` (the first validation batch): image | ground truth |
    prediction (| error, for depth), segmentation overlays with a class legend, referring masks captioned with
    their sentence, and cross-attention maps of a few classes or tokens. Segmentation also gives its per-class
    IoU / accuracy rows (``pl_module.per_class``).

    Where they go, for each logger of the trainer:

    - :class:`WandbLogger`: images under ``val/<name>`` and the table ``val/per_class_iou``;
    - :class:`TensorBoardLogger`: ``add_image`` / ``add_text`` (markdown table);
    - otherwise (CSV logger or none), or with ``to_disk=True``: PNG and CSV files in
      ``<default_root_dir>/panels/`` named by step.

    Args:
        every_n_validations: draw at every n-th validation (1: each).
        attention: include the cross-attention panel (one extra forward on two images; skipped under FSDP).
        to_disk: ``None`` writes files only when no W&B/TensorBoard logger is attached; ``True`` always.
    """

    def __init__(self, every_n_validations: int = 1, attention: bool = True, to_disk: bool | None = None) -> None:
        if every_n_validations < 1:
            raise ValueError(f"PredictionPanels: every_n_validations must be >= 1, got {every_n_validations}")
        self.every_n_validations = every_n_validations
        self.attention = attention
        self.to_disk = to_disk
        self._validations = 0
        #: files written to disk at the last drawing (for tests and scripts)
        self.written: list[Path] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        # every rank runs the (collective-free) forward so that no process waits on another; rank 0 logs.
        # Under FSDP the backbone cannot run outside the sharded root module: no attention panel there.
        attention = self.attention and "FSDP" not in type(trainer.strategy).__name__
        panels = pl_module.example_panels(attention=attention)
        rows = getattr(pl_module, "per_class", None) or []
        self._publish(trainer, panels, rows)

    @rank_zero_only
    def _publish(self, trainer: Trainer, panels: dict, rows: list) -> None:
        step = trainer.global_step
        image_loggers = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        for logger in image_loggers:
            if isinstance(logger, WandbLogger):
                for name, image in panels.items():
                    logger.log_image(key=f"val/{name}", images=[image], caption=[f"step {step}"], step=step)
                if rows:
                    data = [[n, _num(i), _num(a)] for n, i, a in rows]
                    logger.log_table(key="val/per_class_iou", columns=["class", "IoU", "Acc"], data=data, step=step)
            else:
                for name, image in panels.items():
                    logger.experiment.add_image(f"val/{name}", np.asarray(image), step, dataformats="HWC")
                if rows:
                    lines = ["| class | IoU | Acc |", "|---|---|---|"]
                    lines += [f"| {n} | {_fmt(i)} | {_fmt(a)} |" for n, i, a in rows if not math.isnan(i)]
                    logger.experiment.add_text("val/per_class_iou", "\n".join(lines), step)
        self.written = []
        if self.to_disk or (self.to_disk is None and not image_loggers):
            folder = Path(trainer.default_root_dir) / "panels"
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in panels.items():
                path = folder / f"{name}_step{step:07d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)  # multi-task panels: <task>/<picture>
                image.save(path)
                self.written.append(path)
            if rows:
                path = folder / f"per_class_iou_step{step:07d}.csv"
                with path.open("w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["class", "IoU", "Acc"])
                    writer.writerows([n, _fmt(i), _fmt(a)] for n, i, a in rows)
                self.written.append(path)

    def state_dict(self) -> dict:
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict) -> None:
        self._validations = int(state_dict.get("validations", 0))


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"
