"""Checks of a composed run configuration, before the data set or the model is built.

A negative learning rate or ``batch_size=0`` would otherwise surface after the data module and the model are
built (about a minute with the full SD-1.5 weights), as an error from inside torch that names no option.
:func:`validate_config` reads only plain values (nothing is instantiated, no resolver with side effects runs)
and reports every problem at once, each line naming its key, as a :class:`~vpd_lightning.utils.errors.ConfigError`.
Keys a configuration does not have are skipped, so the checks hold for every task and for custom configs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from vpd_lightning.utils.errors import ConfigError

__all__ = ["config_problems", "validate_config"]

_ABSENT = object()


def _get(cfg: DictConfig, key: str) -> Any:
    """The resolved plain value at ``key``; ``_ABSENT`` when missing or not resolvable here."""
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a run: left to the code that uses it
        return _ABSENT
    if value is None or value is _ABSENT:
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except Exception:  # noqa: BLE001
            return _ABSENT
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _is_number(v) and v >= 0


def _int_at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= minimum


def _fraction(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= 1


def _pair(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 2 and all(map(check, v))


def _side(v: Any) -> bool:
    """An image side the VAE accepts: a positive multiple of 8 (its stride)."""
    return _is_int(v) and v > 0 and v % 8 == 0


def _limit_batches(v: Any) -> bool:
    """Lightning's ``limit_*_batches``: a fraction in [0, 1] or a number of batches."""
    return v is None or (_is_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1)


def _val_check_interval(v: Any) -> bool:
    return v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)


def _precisions() -> set[str] | None:
    """The ``trainer.precision`` values Lightning accepts (``None`` when this Lightning does not say)."""
    try:
        from typing import get_args

        from lightning.fabric.plugins.precision.precision import (
            _PRECISION_INPUT_INT,
            _PRECISION_INPUT_STR,
            _PRECISION_INPUT_STR_ALIAS,
        )
    except ImportError:  # pragma: no cover - private names of another Lightning version
        return None
    return {str(p) for p in get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_STR_ALIAS)} | {
        str(p) for p in get_args(_PRECISION_INPUT_INT)
    }


#: key -> (check of a present, non-null value, what is expected); ``None`` values pass unless listed in
#: :data:`_REQUIRED`.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer"),
    "model.optimizer.lr": (_positive, "> 0"),
    "model.optimizer.weight_decay": (_non_negative, ">= 0"),
    "model.optimizer.betas": (_pair(lambda b: _is_number(b) and 0 <= b < 1), "two numbers in [0, 1)"),
    "model.optimizer.eps": (_positive, "> 0"),
    "model.unet_lr_mult": (_non_negative, ">= 0"),
    "model.scheduler.min_lr": (_non_negative, ">= 0"),
    "model.scheduler.power": (_non_negative, ">= 0"),
    "model.scheduler.warmup_steps": (_int_at_least(0), "an integer >= 0"),
    "model.scheduler.warmup_ratio": (_fraction, "in [0, 1]"),
    "data.batch_size": (_int_at_least(1), "an integer >= 1"),
    "data.eval_batch_size": (_int_at_least(1), "an integer >= 1"),
    "data.num_workers": (_int_at_least(0), "an integer >= 0"),
    "trainer.loader.num_workers": (_int_at_least(0), "an integer >= 0"),
    "trainer.max_epochs": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (no limit), null or an integer >= 1"),
    "trainer.max_steps": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (no limit) or an integer >= 1"),
    "trainer.accumulate_grad_batches": (_int_at_least(1), "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (_int_at_least(1), "null or an integer >= 1"),
    "trainer.val_check_interval": (_val_check_interval, "null, an integer >= 1 or a fraction in (0, 1]"),
    "trainer.log_every_n_steps": (_int_at_least(1), "an integer >= 1"),
    "trainer.num_sanity_val_steps": (_int_at_least(-1), "an integer >= -1"),
    "trainer.gradient_clip_val": (_non_negative, "null or a number >= 0"),
    "trainer.num_nodes": (_int_at_least(1), "an integer >= 1"),
    "trainer.limit_train_batches": (_limit_batches, "null, a fraction in [0, 1] or an integer >= 0"),
    "trainer.limit_val_batches": (_limit_batches, "null, a fraction in [0, 1] or an integer >= 0"),
    "trainer.limit_test_batches": (_limit_batches, "null, a fraction in [0, 1] or an integer >= 0"),
    "backbone.timestep": (lambda v: _is_int(v) and 0 <= v < 1000, "an integer in [0, 1000) (SD's 1000 steps)"),
    "mode": (lambda v: v in ("min", "max"), "'min' or 'max'"),
    # depth
    "model.min_depth": (_positive, "> 0"),
    "model.max_depth": (_positive, "> 0"),
    "model.silog_lambda": (_fraction, "in [0, 1]"),
    "model.input_padding": (_side, "null or a positive multiple of 8"),
    "model.shift_size": (_int_at_least(1), "an integer >= 1"),
    "depth.protocol": (lambda v: v in ("metric", "affine_invariant"), "'metric' or 'affine_invariant'"),
    "depth.alignment": (lambda v: v in ("depth", "disparity"), "'depth' or 'disparity'"),
    "model.eval_crop": (
        lambda v: v in ("nyu_eigen", "kitti_garg", "kitti_eigen"),
        "null, nyu_eigen, kitti_garg or kitti_eigen",
    ),
    "data.depth_scale": (_positive, "> 0 (16-bit PNG value per metre)"),
    "data.kb_crop": (_pair(_int_at_least(1)), "null or two integers >= 1 (height, width)"),
    # segmentation
    "model.crop_size": (_pair(_side), "two positive multiples of 8 (the VAE's stride)"),
    "model.stride": (_pair(_int_at_least(1)), "two integers >= 1"),
    "model.test_ratios": (lambda v: isinstance(v, Sequence) and len(v) > 0 and all(map(_positive, v)), "numbers > 0"),
    "data.ratio_range": (_pair(_positive), "two numbers > 0"),
    "data.cat_max_ratio": (lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]"),
    # referring
    "data.image_size": (_side, "a positive multiple of 8 (the VAE's stride)"),
    "data.max_tokens": (_int_at_least(2), "an integer >= 2 (start and end tokens)"),
    "model.class_weights": (_pair(_non_negative), "two numbers >= 0"),
}

#: keys whose ``null`` is an error too
_REQUIRED = {"model.optimizer.lr", "data.batch_size", "trainer.max_steps", "mode"}


def config_problems(cfg: DictConfig) -> list[str]:
    """One line per invalid option of ``cfg`` (``key must be ..., got ...``); empty when all is well."""
    problems: list[str] = []

    def report(key: str, expected: str, value: Any) -> None:
        problems.append(f"{key} must be {expected}, got {value!r}")

    for key, (check, expected) in _RULES.items():
        value = _get(cfg, key)
        if value is _ABSENT or (value is None and key not in _REQUIRED):
            continue
        if value is None or not check(value):
            report(key, expected, value)

    from vpd_lightning.backbone.diffusion_backbone import ATTENTION_LEVELS

    attention = _get(cfg, "backbone.attention")
    if attention is not _ABSENT and attention not in ATTENTION_LEVELS:
        report("backbone.attention", f"one of {sorted(ATTENTION_LEVELS)}", attention)
    precisions = _precisions()
    precision = _get(cfg, "trainer.precision")
    if precisions and precision not in (_ABSENT, None) and str(precision) not in precisions:
        report("trainer.precision", f"one of {sorted(precisions)}", precision)

    low, high = _get(cfg, "model.min_depth"), _get(cfg, "model.max_depth")
    if _positive(low) and _positive(high) and high <= low:
        report("model.max_depth", f"> model.min_depth ({low})", high)
    ratio = _get(cfg, "data.ratio_range")
    if _pair(_positive)(ratio) and ratio[0] > ratio[1]:
        report("data.ratio_range", "[low, high] with low <= high", ratio)
    _check_crop(cfg, report)
    return problems


def _check_crop(cfg: DictConfig, report: Callable[[str, str, Any], None]) -> None:
    """``data.crop_size``: two positive sides; multiples of 8 where the crop is the network input (segmentation;
    depth with ``model.input_padding=null``; depth pads to a multiple of ``input_padding`` otherwise)."""
    crop = _get(cfg, "data.crop_size")
    if crop is _ABSENT or crop is None:
        return
    from vpd_lightning.export import config_task

    task = config_task(cfg)
    padded = task == "depth" and _get(cfg, "model.input_padding") not in (None, _ABSENT)
    if task == "segmentation" or (task == "depth" and not padded):
        if not _pair(_side)(crop):
            why = "segmentation" if task == "segmentation" else "depth with model.input_padding=null"
            report("data.crop_size", f"two positive multiples of 8 (in {why} the crop is the VAE's input)", crop)
    elif not _pair(_int_at_least(1))(crop):
        report("data.crop_size", "two integers >= 1", crop)


def _multitask_problems(cfg: DictConfig) -> list[str]:
    """A multi-task config: each trained task's ``model.<task>`` / ``data.<task>`` checked as a single-task one."""
    from omegaconf import OmegaConf

    from vpd_lightning.data.multitask import check_task_list

    tasks = check_task_list(list(_get(cfg, "multitask.tasks") or []) or None)
    problems = []
    for task in tasks:
        if _get(cfg, f"data.{task}") in (_ABSENT, None) or _get(cfg, f"model.{task}") in (_ABSENT, None):
            continue  # the data module / model reports the missing task by name
        # each option resolved where it can be here (a memory= preset's ${memory...} values point outside the
        # task's node), kept as written otherwise
        model = _resolved_items(cfg, f"model.{task}")
        data = _resolved_items(cfg, f"data.{task}")
        for key in ("backbone", "class_embeddings", "text_encoder", "class_names", "max_tokens"):
            model.pop(key, None)
        for key in ("root", "tokenizer", "class_names"):
            data.pop(key, None)
        trainer = OmegaConf.to_container(cfg.trainer, resolve=False)
        view = OmegaConf.create({"model": model, "data": data, "trainer": trainer, "mode": cfg.get("mode", "max")})
        for problem in config_problems(view):
            for group in ("model", "data"):
                if problem.startswith(f"{group}."):
                    problem = f"{group}.{task}." + problem[len(group) + 1 :]
            problems.append(problem)
    return problems


def _resolved_items(cfg: DictConfig, key: str) -> dict:
    """The options of the node at ``key``, each resolved against the whole ``cfg`` when it can be (as written
    otherwise)."""
    raw = OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=False)
    out = {}
    for name, value in raw.items():
        resolved = _get(cfg, f"{key}.{name}")
        out[name] = value if resolved is _ABSENT else resolved
    return out


def _check_memory_tables(cfg: DictConfig, multitask: bool) -> None:
    """A ``memory=`` preset's ``batch`` / ``accumulate`` tables must have an entry for every trained task: one line
    naming the preset, the table, the missing task and the tasks it has."""
    memory = _get(cfg, "memory")
    if not isinstance(memory, dict):
        return
    if multitask:
        tasks = [str(t) for t in (_get(cfg, "multitask.tasks") or [])]
    else:
        from vpd_lightning.export import config_task

        name = _get(cfg, "task_name")
        tasks = [name if isinstance(name, str) else config_task(cfg)]
    for key in ("batch", "accumulate"):
        table = memory.get(key)
        if not isinstance(table, dict):
            continue
        for task in tasks:
            if task is not None and task not in table:
                raise ConfigError(
                    f"memory={memory.get('name', '?')}: memory.{key} has no '{task}'; it has {', '.join(table)}"
                )


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every invalid option of ``cfg`` (see the module docstring)."""
    multitask = str(_get(cfg, "model._target_")).endswith("MultiTaskModel")
    _check_memory_tables(cfg, multitask)  # the root cause of the missing batch size / accumulation below
    problems = config_problems(cfg)
    if multitask:
        problems += _multitask_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
