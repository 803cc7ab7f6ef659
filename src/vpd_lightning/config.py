"""Where the Hydra configs live, and the OmegaConf resolvers they use.

The configs are the repository's ``conf/`` folder. A wheel ships them as the package ``vpd_lightning.conf``
(``setup.py`` maps that package onto ``conf/``), found through Hydra's package search path
(``pkg://vpd_lightning.conf``); in a source checkout (editable install, ``PYTHONPATH=src``) the ``conf/`` folder
beside ``src/`` is used, so that edits to it count at once. A user's own config folder is added on the command
line with ``--config-dir <folder>`` (Hydra's option; its groups extend or override the package's) or
``'hydra.searchpath=[file:///abs/folder]'``.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vpd_lightning.utils.errors import UserError

__all__ = [
    "CONFIG_DIR",
    "CONFIG_PACKAGE",
    "CONFIG_PATH",
    "ConfigNotFoundError",
    "cpu_has_native_bf16",
    "find_config_dir",
    "hydra_main",
    "job_overrides",
    "register_resolvers",
]

#: The package that holds the configs in an installed wheel.
CONFIG_PACKAGE = "vpd_lightning.conf"
#: ``conf/`` of a source checkout (``src/vpd_lightning/config.py`` -> ``conf/``).
CHECKOUT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
#: The root config every search must find.
_ROOT_CONFIG = "train.yaml"


class ConfigNotFoundError(UserError, FileNotFoundError):
    """The Hydra configs are neither in the installed package nor in a source checkout; the message says where
    they were looked for."""


def _package_config_dir() -> Path | None:
    """The folder of the installed package ``vpd_lightning.conf``, or ``None`` when it is not installed."""
    try:
        if importlib.util.find_spec(CONFIG_PACKAGE) is None:
            return None
        folder = Path(str(importlib.resources.files(CONFIG_PACKAGE)))
    except (ImportError, TypeError, ValueError):
        return None
    return folder if (folder / _ROOT_CONFIG).is_file() else None


def find_config_dir() -> tuple[Path, str]:
    """The config folder and its Hydra search-path entry: the source checkout's ``conf/`` (a file path) when
    this module runs from one, else the installed package ``vpd_lightning.conf`` (``pkg://vpd_lightning.conf``).

    Raises :class:`ConfigNotFoundError` naming both places when neither holds ``train.yaml``.
    """
    if (CHECKOUT_CONFIG_DIR / _ROOT_CONFIG).is_file():
        return CHECKOUT_CONFIG_DIR, str(CHECKOUT_CONFIG_DIR)
    folder = _package_config_dir()
    if folder is not None:
        return folder, f"pkg://{CONFIG_PACKAGE}"
    installed = Path(__file__).resolve().parent / "conf"
    raise ConfigNotFoundError(
        f"vpd_lightning: the Hydra configs ({_ROOT_CONFIG}) were not found; looked in the package "
        f"'{CONFIG_PACKAGE}' ({installed}) and in the source checkout's '{CHECKOUT_CONFIG_DIR}'. Reinstall the "
        "package (`pip install vpd_lightning-*.whl` or `pip install .` from a checkout; the wheel ships them)"
    )


try:
    #: Absolute path of the config folder (``conf/`` of a checkout, or the installed ``vpd_lightning/conf``).
    CONFIG_DIR, CONFIG_PATH = find_config_dir()
    _CONFIG_ERROR: ConfigNotFoundError | None = None
except ConfigNotFoundError as _err:  # reported by hydra_main, in one line, when an entry point starts
    CONFIG_DIR, CONFIG_PATH, _CONFIG_ERROR = Path(__file__).resolve().parent / "conf", "", _err


def hydra_main(config_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@hydra.main`` on the package's configs (``config_name``: the root config). A missing config folder
    is reported in one line naming the places searched (exit status 1) before Hydra starts."""
    import hydra

    def decorator(task_function: Callable[..., Any]) -> Callable[..., Any]:
        main = hydra.main(version_base="1.3", config_path=CONFIG_PATH or None, config_name=config_name)(task_function)

        @functools.wraps(task_function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _CONFIG_ERROR is not None and not args and not kwargs:
                print(f"{type(_CONFIG_ERROR).__name__}: {_CONFIG_ERROR}", file=sys.stderr)
                raise SystemExit(1)
            return main(*args, **kwargs)

        return wrapper

    return decorator


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
    """``${vpd_class_names:ade20k}`` (``nyuv2``, ``cityscapes``, ``voc2012``): a data set's class list, in label
    order."""
    if dataset == "ade20k":
        from vpd_lightning.data.ade20k import ADE20K_CLASSES

        return list(ADE20K_CLASSES)
    if dataset == "nyuv2":
        from vpd_lightning.data.nyuv2 import NYU_SCENE_CLASSES

        return list(NYU_SCENE_CLASSES)
    if dataset == "cityscapes":
        from vpd_lightning.data.cityscapes import CITYSCAPES_CLASSES

        return list(CITYSCAPES_CLASSES)
    if dataset == "voc2012":
        from vpd_lightning.data.voc import VOC_CLASSES

        return list(VOC_CLASSES)
    raise ValueError(f"vpd_class_names: unknown data set '{dataset}' (ade20k, nyuv2, cityscapes or voc2012)")


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


def _memory_apply(preset: str | None, task: str) -> str:
    """``${vpd_memory_apply:${memory},${task}}`` (train.yaml's defaults list): which ``conf/memory/apply`` file puts
    a ``memory=`` preset's tables into effect: ``multitask`` for ``task=multitask``, ``single`` for one task,
    ``none`` (no such file: nothing applied) without a preset."""
    if preset in (None, "null", "None"):
        return "none"
    return "multitask" if task == "multitask" else "single"


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
    if not OmegaConf.has_resolver("vpd_memory_apply"):
        OmegaConf.register_new_resolver("vpd_memory_apply", _memory_apply)
    if not OmegaConf.has_resolver("vpd_run_name"):
        OmegaConf.register_new_resolver("vpd_run_name", _run_name)


register_resolvers()
