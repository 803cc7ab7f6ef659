"""Evaluation entry point: ``python -m vpd_lightning.evaluate task=depth ckpt_path=...``.

Runs the task's test protocol (for depth: full images, two shifted windows with flips, Eigen crop,
1e-3..10 m, per-image metrics averaged; ``depth.protocol=affine_invariant`` for the zero-shot protocol, see
:mod:`vpd_lightning.metrics.depth`) on the checkpoint and prints the metrics table.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vpd_lightning.checkpoint import check_run_checkpoint
from vpd_lightning.config import hydra_main
from vpd_lightning.export import CheckpointNotFoundError
from vpd_lightning.train import build
from vpd_lightning.utils import format_metrics
from vpd_lightning.utils.errors import ConfigError, report_user_errors
from vpd_lightning.utils.validate import validate_config

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` with the configured task and data; return the metrics."""
    ckpt = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.ckpt_path
    if not ckpt:
        raise ConfigError(
            "evaluate needs ckpt_path=<checkpoint file> (e.g. outputs/depth/runs/.../checkpoints/best-*.ckpt)"
        )
    if not Path(ckpt).is_file():
        raise CheckpointNotFoundError(f"ckpt_path: checkpoint '{ckpt}' does not exist")
    validate_config(cfg)
    check_run_checkpoint(ckpt, cfg)  # damaged, or of another task: say so before building anything
    torch.set_float32_matmul_precision("high")
    _use_checkpoint_finetune(cfg, str(ckpt))
    objects = build(cfg)
    trainer = objects["trainer"]
    results = trainer.test(objects["model"], datamodule=objects["datamodule"], ckpt_path=str(ckpt), verbose=False)
    metrics = {k: float(v) for k, v in results[0].items()}
    if trainer.is_global_zero:
        print(format_metrics(metrics, f"test ({ckpt})"))
        table = getattr(objects["model"], "per_class_table", None)
        if table:
            print(table)
    return metrics


def _use_checkpoint_finetune(cfg: DictConfig, ckpt: str) -> None:
    """Build the model with the fine-tuning configuration stored in the checkpoint (a LoRA checkpoint needs its
    adapters in the model before loading), unless ``finetune=...`` was given on the command line."""
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.export import read_checkpoint

    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not a Hydra run
        overrides = []
    if any(o.lstrip("+~").split("=", 1)[0].split(".")[0] == "finetune" for o in overrides):
        return
    stored = ((read_checkpoint(ckpt).get("vpd_config") or {}).get("backbone") or {}).get("finetune")
    current = OmegaConf.to_container(cfg.finetune, resolve=True) if "finetune" in cfg else None
    if stored and stored != current:
        log.info("finetune: %s (stored in the checkpoint)", stored)
        with open_dict(cfg):
            cfg.finetune = stored


@hydra_main("evaluate")
@report_user_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
