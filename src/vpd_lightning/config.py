"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["CONFIG_DIR", "cpu_has_native_bf16", "job_overrides", "register_resolvers"]

#: Absolute path of the repository's ``conf/`` folder (works for ``python -m``, imports and console scripts).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def _tiny_sd(path: str, family: str = "sd15") -> str:
    """``${vpd_tiny_sd:DIR[,FAMILY]}``: the tiny SD components of FAMILY's topology (default sd15) in DIR (written,
    random, if DIR holds none), return DIR."""
    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion

    return str(save_tiny_stable_diffusion(Path(path).expanduser(), vae_pretrain_steps=None, family=family))


def _sd_path(family: str) -> str:
    """``${vpd_sd_path:FAMILY}``: the weights of a backbone family: ``$VPD_SD_PATH`` (sd15) or
    ``$VPD_<FAMILY>_PATH`` (``VPD_SD21_PATH``, ``VPD_SD21_BASE_PATH``, ``VPD_SDXL_PATH``) when set, else the
    family's default hub id."""
    import os

    from vpd_lightning.backbone.families import get_family

    variable = "VPD_SD_PATH" if family == "sd15" else f"VPD_{family.upper()}_PATH"
    return os.environ.get(variable) or get_family(family).hub_id


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


def _swept_keys(sweep_dir: str) -> set[str] | None:
    """The keys a multirun varies: its command line's sweep overrides (``lr=1e-4,1e-3``, ``'t=choice(1,100)'``)
    and an Optuna sweeper's ``params``, read from ``<sweep dir>/multirun.yaml`` (written by the sweeper before
    the first job); ``None`` when there is no such file."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    master = OmegaConf.load(path).hydra
    overrides = OverridesParser.create().parse_overrides(list(master.overrides.task))
    keys = {o.key_or_group for o in overrides if o.is_sweep_override()}
    params = master.sweeper.get("params") if "sweeper" in master else None
    return keys | set(params or {})


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last component, or as many trailing components as make it unique among ``keys``."""
    names = {}
    for key in keys:
        parts = key.split(".")
        n = 1
        while n < len(parts) and sum(k.split(".")[-n:] == parts[-n:] for k in keys) > 1:
            n += 1
        names[key] = ".".join(parts[-n:])
    return names


def _short_value(value: str) -> str:
    """Long floats (Optuna's samples) to 4 significant digits; anything else as written."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and not value.lstrip("-").isdigit() else value


def _run_name() -> str | None:
    """``${vpd_run_name:}``: in a multirun, the job number and the values of the swept keys only, short form
    (``3:lr=0.0003142,timestep=100``; the full override list is in the logged config, key ``overrides``), else
    ``None`` (the logger picks one). Without a ``multirun.yaml``: ``<job>:<all overrides>``, cut at 128."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = _hydra_multirun()
    if hydra_cfg is None:
        return None
    swept = _swept_keys(hydra_cfg.sweep.dir)
    if swept is None:
        return f"{hydra_cfg.job.num}:{hydra_cfg.job.override_dirname}"[:128]
    job = [
        o for o in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)) if o.key_or_group in swept
    ]
    short = _short_names([o.key_or_group for o in job])
    values = ",".join(f"{short[o.key_or_group]}={_short_value(o.get_value_element_as_str())}" for o in job)
    return f"{hydra_cfg.job.num}:{values}"[:128] if values else str(hydra_cfg.job.num)


def job_overrides() -> list[str]:
    """The command-line overrides of this run (of this job, in a multirun); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _direction(mode: str) -> str:
    """``${vpd_direction:${mode}}``: the Optuna direction of a ``min``/``max`` monitor mode."""
    directions = {"min": "minimize", "max": "maximize"}
    if mode not in directions:
        raise ValueError(f"vpd_direction: mode must be 'min' or 'max', got '{mode}'")
    return directions[mode]


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` among its flags)."""
    from vpd_lightning.utils.cpu import cpu_info

    flags = cpu_info(cpuinfo)["flags"]
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
    if not OmegaConf.has_resolver("vpd_sd_path"):
        OmegaConf.register_new_resolver("vpd_sd_path", _sd_path)
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
