"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["CONFIG_DIR", "cpu_has_native_bf16", "register_resolvers"]

#: Absolute path of the repository's ``conf/`` folder (works for ``python -m``, imports and console scripts).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def _tiny_sd(path: str) -> str:
    """``${vpd_tiny_sd:DIR}``: the tiny SD components in DIR (written, random, if DIR holds none), return DIR."""
    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion

    return str(save_tiny_stable_diffusion(Path(path).expanduser(), vae_pretrain_steps=None))


def _class_names(dataset: str) -> list[str]:
    """``${vpd_class_names:ade20k}`` / ``${vpd_class_names:nyuv2}``: a data set's class list, in label order."""
    if dataset == "ade20k":
        from vpd_lightning.data.generate import ADE20K_CLASSES

        return list(ADE20K_CLASSES)
    if dataset == "nyuv2":
        from vpd_lightning.data.nyuv2 import NYU_SCENE_CLASSES

        return list(NYU_SCENE_CLASSES)
    raise ValueError(f"vpd_class_names: unknown data set '{dataset}' (ade20k or nyuv2)")


def _hydra_multirun():
    """The HydraConfig of a multirun job, else ``None`` (single run, or no Hydra at all)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.get("mode") == RunMode.MULTIRUN else None


def _run_group(default: str) -> str:
    """``${vpd_run_group:NAME}``: ``NAME-sweep-<sweep folder>`` in a multirun (one group per sweep), else NAME."""
    hydra_cfg = _hydra_multirun()
    return default if hydra_cfg is None else f"{default}-sweep-{Path(hydra_cfg.sweep.dir).name}"


def _run_name() -> str | None:
    """``${vpd_run_name:}``: ``<job number>:<overrides>`` in a multirun, else ``None`` (the logger picks one)."""
    hydra_cfg = _hydra_multirun()
    if hydra_cfg is None:
        return None
    return f"{hydra_cfg.job.num}:{hydra_cfg.job.override_dirname}"[:128]


def _direction(mode: str) -> str:
    """``${vpd_direction:${mode}}``: the Optuna direction of a ``min``/``max`` monitor mode."""
    directions = {"min": "minimize", "max": "maximize"}
    if mode not in directions:
        raise ValueError(f"vpd_direction: mode must be 'min' or 'max', got '{mode}'")
    return directions[mode]


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` among its flags)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _fast_precision() -> str:
    """``${vpd_fast_precision:}``: ``bf16-mixed`` where bf16 is fast (a CUDA GPU with bf16, a CPU with native bf16),
    else ``32-true``. Without native bf16 a CPU converts every bf16 operand to fp32 and back: autocast then adds
    conversions and saves no arithmetic."""
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("vpd_tiny_sd"):
        OmegaConf.register_new_resolver("vpd_tiny_sd", _tiny_sd, use_cache=True)
    if not OmegaConf.has_resolver("vpd_class_names"):
        OmegaConf.register_new_resolver("vpd_class_names", _class_names)
    if not OmegaConf.has_resolver("vpd_run_group"):
        OmegaConf.register_new_resolver("vpd_run_group", _run_group)
    if not OmegaConf.has_resolver("vpd_direction"):
        OmegaConf.register_new_resolver("vpd_direction", _direction)
    if not OmegaConf.has_resolver("vpd_fast_precision"):
        OmegaConf.register_new_resolver("vpd_fast_precision", _fast_precision)
    if not OmegaConf.has_resolver("vpd_run_name"):
        OmegaConf.register_new_resolver("vpd_run_name", _run_name)


register_resolvers()
