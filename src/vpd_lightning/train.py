"""Training entry point: ``python -m vpd_lightning.train task=depth [overrides]``."""

from __future__ import annotations

import logging
import signal
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from vpd_lightning.checkpoint import check_run_checkpoint, remove_stale_temp_files
from vpd_lightning.config import hydra_main, job_overrides
from vpd_lightning.export import CheckpointNotFoundError, model_spec
from vpd_lightning.memory import apply_memory_preset
from vpd_lightning.utils import format_metrics, instantiate_list
from vpd_lightning.utils.errors import report_user_errors
from vpd_lightning.utils.validate import validate_config

log = logging.getLogger(__name__)

# The frozen VAE (and CLIP text encoder) stay in eval mode on purpose; Lightning would warn at every fit.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def _resolve_ckpt(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` (a file, or ``last`` for ``<output_dir>/checkpoints/last.ckpt``),
    or with ``auto_resume=true`` that ``last.ckpt`` when it exists (a fresh start otherwise)."""
    path = cfg.get("ckpt_path")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if path is None and cfg.get("auto_resume", False):
        if last.is_file():
            log.info("auto_resume: continuing from %s", last)
            return str(last)
        log.info("auto_resume: no %s yet, starting from scratch", last)
        return None
    if path == "last":
        path = last
    if path is not None and not Path(path).is_file():
        raise CheckpointNotFoundError(f"ckpt_path: checkpoint '{path}' does not exist")
    return None if path is None else str(path)


def _resume_wandb_run(cfg: DictConfig, ckpt_path: str) -> None:
    """Point a W&B logger without an explicit ``id`` at the run stored in the checkpoint, so that the resumed
    run continues the same dashboard run."""
    loggers = cfg.get("logger") or {}
    targets = [k for k, v in loggers.items() if isinstance(v, DictConfig) and "Wandb" in str(v.get("_target_", ""))]
    if not targets:
        return
    checkpoint = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=False)
    run_id = checkpoint.get("wandb_run_id")
    for key in targets:
        if run_id and cfg.logger[key].get("id") is None:
            with open_dict(cfg):
                cfg.logger[key].id = run_id
            log.info("resuming W&B run %s", run_id)


def _start_wandb_run(logger, attempts: int = 30, wait_s: float = 1.0) -> None:
    """Open the W&B run of a resumed fit, waiting while the interrupted process's W&B service (which outlives
    it by a second or two) still holds the run id."""
    for attempt in range(attempts):
        try:
            logger.experiment  # noqa: B018 -- starts the run
            return
        except Exception as err:  # wandb raises its ServerResponseError
            if "is in use" not in str(err) or attempt == attempts - 1:
                raise
            log.info("W&B run %s is still held by the interrupted process; retrying in %.0f s", logger.version, wait_s)
            time.sleep(wait_s)


def build(cfg: DictConfig, resume_from: str | None = None) -> dict:
    """Instantiate data module, model, callbacks, loggers and trainer (data first: a bad root fails at once).

    ``resume_from``: the checkpoint a fit will resume from (its W&B run id is reused).
    """
    L.seed_everything(cfg.seed, workers=True)
    if resume_from is not None:
        _resume_wandb_run(cfg, resume_from)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    # what rebuilds the model from a checkpoint alone (stored by VPDTask.on_save_checkpoint)
    model.vpd_config = model_spec(cfg, model, tokenizer=getattr(datamodule, "tokenizer", None))
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("loader", None)  # the data modules' settings (trainer.loader), not a Trainer argument
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    if resume_from is not None:
        for logger in loggers:
            if type(logger).__name__ == "WandbLogger":
                _start_wandb_run(logger)
    if loggers:
        resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        resolved["overrides"] = job_overrides()  # the whole command line (sweep run names show the swept keys)
        for logger in loggers:
            logger.log_hyperparams(resolved)
    return {"datamodule": datamodule, "model": model, "trainer": trainer}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Fit (and test) the configured task; return the metrics and the objects."""
    validate_config(cfg)  # bad values fail here, in seconds, not after the data and the model are built
    fit = apply_memory_preset(cfg)  # memory=<preset>: batch x accumulation for the family, or a clear refusal
    if fit is not None:
        log.info(
            "memory=%s, backbone=%s: per-GPU batch %d x accumulation %d, %.2f GB of %.0f GB (state %.2f GB + "
            "activations %.2f GB per image)", fit.preset, fit.family, fit.batch, fit.accumulate, fit.needed / 1e9,
            fit.budget / 1e9, fit.state / 1e9, fit.activations_per_image / 1e9,
        )  # fmt: skip
    torch.set_float32_matmul_precision("high")
    log.info("output folder: %s", cfg.paths.output_dir)
    remove_stale_temp_files(Path(cfg.paths.output_dir) / "checkpoints")
    ckpt_path = _resolve_ckpt(cfg) if cfg.get("train", True) else None
    if ckpt_path is not None:
        check_run_checkpoint(ckpt_path, cfg)  # damaged, or of another task: say so before building anything
    objects = build(cfg, resume_from=ckpt_path)
    trainer, model, datamodule = objects["trainer"], objects["model"], objects["datamodule"]
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    finetune = getattr(getattr(model, "backbone", None), "finetune", {}).get("mode", "?")
    log.info("parameters: %.2f M trainable, %.2f M frozen (finetune=%s)", n_train / 1e6, n_frozen / 1e6, finetune)
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:
            # Lightning stops cleanly at a step boundary but would exit with status 0, like a finished run
            last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
            log.warning(
                "stopped by SIGTERM at step %d; last checkpoint: %s. Continue with the same output folder and "
                "ckpt_path=last (or auto_resume=true).",
                trainer.global_step,
                last if last.is_file() else "none yet",
            )
            raise SystemExit(128 + signal.SIGTERM) from None
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


def _finish_wandb(failed: bool) -> None:
    """Close the W&B run (if any) so that the next job of a multirun starts its own, and a failure is marked."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


@hydra_main("train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Train; return the monitored metric (the objective of Hydra sweepers such as Optuna)."""
    failed = True
    try:
        metrics, _ = train(cfg)
        failed = False
    finally:
        _finish_wandb(failed)
    value = metrics.get(cfg.get("monitor", ""))
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
