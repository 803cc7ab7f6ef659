"""Training entry point: ``python -m vpd_lightning.train task=depth [overrides]``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vpd_lightning.config import CONFIG_DIR
from vpd_lightning.export import model_spec
from vpd_lightning.utils import format_metrics, instantiate_list

log = logging.getLogger(__name__)

# The frozen VAE (and CLIP text encoder) stay in eval mode on purpose; Lightning would warn at every fit.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def _resolve_ckpt(cfg: DictConfig) -> str | None:
    path = cfg.get("ckpt_path")
    if path == "last":
        path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint '{path}' does not exist")
    return None if path is None else str(path)


def build(cfg: DictConfig) -> dict:
    """Instantiate data module, model, callbacks, loggers and trainer (data first: a bad root fails at once)."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    # what rebuilds the model from a checkpoint alone (stored by VPDTask.on_save_checkpoint)
    model.vpd_config = model_spec(cfg, model, tokenizer=getattr(datamodule, "tokenizer", None))
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if loggers:
        resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        for logger in loggers:
            logger.log_hyperparams(resolved)
    return {"datamodule": datamodule, "model": model, "trainer": trainer}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Fit (and test) the configured task; return the metrics and the objects."""
    torch.set_float32_matmul_precision("high")
    log.info("output folder: %s", cfg.paths.output_dir)
    objects = build(cfg)
    trainer, model, datamodule = objects["trainer"], objects["model"], objects["datamodule"]
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    log.info("parameters: %.2f M trainable, %.2f M frozen", n_train / 1e6, n_frozen / 1e6)
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=_resolve_ckpt(cfg))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test", False):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        test_metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        metrics.update(test_metrics)
        if trainer.is_global_zero and test_metrics:
            print(format_metrics(test_metrics, f"test ({best or 'last weights'})"))
    log.info("output folder: %s", cfg.paths.output_dir)
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    value = metrics.get(cfg.get("monitor", ""))
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
