"""Which parts of the UNet train: the fine-tuning modes (``finetune=full|lora|partial|frozen``).

VPD fine-tunes the whole UNet (``full``). The other modes trade accuracy for memory: only what trains needs
gradients and optimizer state. The text adapter, the task head and the adapter's ``gamma`` train in every mode
(they live outside the UNet and are untouched here); the VAE and the UNet's never-run output head
(``conv_norm_out``, ``conv_out``) are frozen in every mode.

The configuration (root node ``finetune``, config group ``conf/finetune/``, handed to the backbone as
``backbone.finetune``) is one mapping:

``{mode: full}``
    every UNet parameter trains (VPD's recipe; the default).
``{mode: lora, rank: 8, alpha: 8, dropout: 0.0, target_modules: [to_q, to_k, to_v, to_out.0], resnet_convs: false}``
    LoRA adapters (through peft, as diffusers does) on the UNet layers whose module names end in one of
    ``target_modules`` (default: the query/key/value/output projections of every attention layer);
    ``resnet_convs: true`` also adapts the resnet convolutions (``conv1``, ``conv2``). The base UNet is frozen;
    ``lora_B`` starts at zero, so the model at initialisation is exactly the pretrained one. ``merged: true`` is
    written by :func:`merge_adapters`/export: the adapters are already added into the UNet weights (nothing is
    injected when such a description is rebuilt).
``{mode: partial, train_blocks: [up_blocks]}``
    only the named UNet sub-modules train (names or prefixes of ``unet.named_modules()``: ``up_blocks``,
    ``up_blocks.3``, ``mid_block``, ``conv_in``, ``time_embedding`` ...); the default, the up blocks, holds every
    tapped feature.
``{mode: frozen}``
    no UNet parameter trains (the text adapter and the head still do; gradients flow through the frozen UNet
    into the text adapter).

:func:`apply_finetune` applies a mode to a built UNet (also one on ``torch.device("meta")``: nothing is
allocated) and returns the complete configuration it applied; :class:`~vpd_lightning.backbone.DiffusionBackbone`
calls it. :func:`check_adapters` tells, before any weight is loaded, whether a state dict and a model agree on
having LoRA adapters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "FINETUNE_MODES",
    "RESNET_CONV_TARGETS",
    "AdapterMismatchError",
    "apply_finetune",
    "check_adapters",
    "has_adapters",
    "lora_targets",
    "merge_adapters",
    "merged_state_dict",
    "normalize_finetune",
]

#: The modes and their options with default values.
FINETUNE_MODES: dict[str, dict[str, Any]] = {
    "full": {},
    "lora": {
        "rank": 8,
        "alpha": 8,
        "dropout": 0.0,
        "target_modules": ["to_q", "to_k", "to_v", "to_out.0"],
        "resnet_convs": False,
        "merged": False,
    },
    "partial": {"train_blocks": ["up_blocks"]},
    "frozen": {},
}
DEFAULT_LORA_TARGETS: tuple[str, ...] = tuple(FINETUNE_MODES["lora"]["target_modules"])
#: Added to the LoRA targets by ``resnet_convs: true``: the two 3x3 convolutions of every resnet.
RESNET_CONV_TARGETS: tuple[str, ...] = ("conv1", "conv2")
#: The UNet's noise-prediction head: never run by the backbone, so never trained (DDP would see unused parameters).
NEVER_RUN = ("conv_norm_out", "conv_out")
#: peft's adapter name (one adapter per model).
ADAPTER_NAME = "default"
_LORA_KEY = re.compile(r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.")


class AdapterMismatchError(ValueError):
    """A state dict with LoRA adapters for a model without them, or the reverse."""


# ----------------------------------------------------------------------------------------------- config
def normalize_finetune(finetune: Mapping[str, Any] | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The complete configuration of a mode: its defaults updated by ``finetune`` and ``overrides``.

    ``finetune`` is a mapping with ``mode`` (or just the mode's name); ``None`` means ``full``. Unknown modes and
    options raise a ``ValueError`` that lists the valid ones.
    """
    if finetune is None:
        config: dict[str, Any] = {}
    elif isinstance(finetune, str):
        config = {"mode": finetune}
    else:
        config = dict(finetune)
    config.update(overrides)
    mode = config.pop("mode", "full")
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune.mode must be one of {', '.join(FINETUNE_MODES)}; got '{mode}'")
    defaults = FINETUNE_MODES[mode]
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise ValueError(f"finetune={mode} has no option {', '.join(unknown)} (its options: {valid})")
    out = {"mode": mode, **{k: _plain(v) for k, v in defaults.items()}}
    out.update({k: _plain(v) for k, v in config.items()})
    if mode == "lora":
        out["rank"], out["alpha"], out["dropout"] = int(out["rank"]), float(out["alpha"]), float(out["dropout"])
        if out["rank"] < 1:
            raise ValueError(f"finetune.rank must be a positive integer; got {out['rank']}")
        if not 0.0 <= out["dropout"] < 1.0:
            raise ValueError(f"finetune.dropout must be in [0, 1); got {out['dropout']}")
        if isinstance(out["target_modules"], str):
            out["target_modules"] = [out["target_modules"]]
        if not out["target_modules"]:
            raise ValueError("finetune.target_modules must name at least one module (e.g. [to_q, to_v])")
    if mode == "partial":
        if isinstance(out["train_blocks"], str):
            out["train_blocks"] = [out["train_blocks"]]
        if not out["train_blocks"]:
            raise ValueError(
                "finetune.train_blocks must name at least one UNet block (e.g. [up_blocks]); "
                "use finetune=frozen to train none"
            )
    return out


def _plain(value: Any) -> Any:
    """Lists/tuples (OmegaConf's ListConfig included) as lists, so configurations compare and serialise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value
    return [str(v) for v in value]


# ------------------------------------------------------------------------------------------------ apply
def apply_finetune(unet: nn.Module, mode: str = "full", **options: Any) -> dict[str, Any]:
    """Set which parameters of ``unet`` train (and inject LoRA adapters for ``mode="lora"``), in place.

    Works on a UNet on any device, ``meta`` included. Returns the complete configuration applied
    (:func:`normalize_finetune`), which the backbone keeps and the model description records.
    """
    config = normalize_finetune(mode, **options)
    mode = config["mode"]
    if mode == "full":
        unet.requires_grad_(True)
    elif mode == "frozen":
        unet.requires_grad_(False)
    elif mode == "partial":
        unet.requires_grad_(False)
        for name in config["train_blocks"]:
            _resolve_block(unet, name).requires_grad_(True)
    elif mode == "lora":
        unet.requires_grad_(False)
        if not config["merged"]:
            _inject_lora(unet, config)
    for name in NEVER_RUN:
        module = getattr(unet, name, None)
        if module is not None:
            module.requires_grad_(False)
    return config


def _block_names(unet: nn.Module) -> list[str]:
    """Names ``partial`` accepts, for error messages: top-level children and their numbered blocks."""
    names = []
    for name, child in unet.named_children():
        if name in NEVER_RUN:
            continue
        names.append(name)
        if isinstance(child, nn.ModuleList):
            names.append(f"{name}.0-{len(child) - 1}")
    return names


def _resolve_block(unet: nn.Module, name: str) -> nn.Module:
    modules = dict(unet.named_modules())
    if name.split(".")[0] in NEVER_RUN:
        raise ValueError(f"finetune.train_blocks: '{name}' is the UNet's noise-prediction head, which VPD never runs")
    if not name or name not in modules:
        raise ValueError(
            f"finetune.train_blocks: '{name}' is not a module of the UNet; available: {', '.join(_block_names(unet))} "
            "(or any deeper module name, e.g. up_blocks.3.attentions.2)"
        )
    return modules[name]


def lora_targets(config: Mapping[str, Any]) -> list[str]:
    """The module-name suffixes LoRA adapts for a ``lora`` configuration."""
    targets = list(config["target_modules"])
    if config.get("resnet_convs"):
        targets += [t for t in RESNET_CONV_TARGETS if t not in targets]
    return targets


def _adaptable_names(unet: nn.Module) -> dict[str, nn.Module]:
    """Linear and Conv2d layers of the UNet (the layer types peft's LoRA adapts), by full module name."""
    return {name: m for name, m in unet.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and name}


def _short_name(name: str) -> str:
    """``...attn1.to_q`` -> ``to_q``; ``...attn1.to_out.0`` -> ``to_out.0`` (an index keeps its parent)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def _check_targets(unet: nn.Module, targets: list[str]) -> None:
    names = _adaptable_names(unet)
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            available = sorted({_short_name(n) for n in names if _short_name(n) not in NEVER_RUN})
            raise ValueError(
                f"finetune.target_modules: '{target}' matches no Linear/Conv2d layer of the UNet (a target is the end "
                f"of a module name); available: {', '.join(available)}"
            )


def _inject_lora(unet: nn.Module, config: Mapping[str, Any]) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    targets = lora_targets(config)
    _check_targets(unet, targets)
    lora_config = LoraConfig(
        r=config["rank"],
        lora_alpha=config["alpha"],
        lora_dropout=config["dropout"],
        target_modules=targets,
        init_lora_weights=True,  # A: Kaiming-uniform, B: zeros -> the adapted model starts as the base model
        bias="none",
    )
    inject_adapter_in_model(lora_config, unet, adapter_name=ADAPTER_NAME)
    # peft gives the adapters the base layer's dtype; trained weights stay float32 (master weights) under a
    # bf16/fp16 base, and peft casts the layer input to the adapter's dtype and the result back
    for name, param in unet.named_parameters():
        if _LORA_KEY.search("." + name) and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()


# --------------------------------------------------------------------------------------- state dicts
def has_adapters(keys: Iterable[str] | nn.Module) -> bool:
    """Whether a model (or the keys of a state dict) holds LoRA adapter weights."""
    if isinstance(keys, nn.Module):
        keys = (name for name, _ in keys.named_parameters())
    return any(_LORA_KEY.search(k) for k in keys)


def check_adapters(state_keys: Iterable[str], model: nn.Module, where: str) -> None:
    """Raise :class:`AdapterMismatchError` (one line) when ``where``'s state dict and ``model`` disagree on LoRA.

    Called before any weight is loaded, so that a mismatch is not reported as hundreds of missing keys.
    """
    in_state, in_model = has_adapters(state_keys), has_adapters(model)
    if in_state and not in_model:
        raise AdapterMismatchError(
            f"'{where}' holds LoRA adapters but the model was built without them: build it with finetune=lora "
            "(the rank and targets it was trained with)"
        )
    if in_model and not in_state:
        raise AdapterMismatchError(
            f"'{where}' holds no LoRA adapters but the model was built with them (finetune=lora): build it with "
            "the finetune mode the checkpoint was trained with (finetune=full, partial or frozen)"
        )


def _lora_layers(unet: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in unet.named_modules() if isinstance(m, LoraLayer)}


def merged_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The UNet's state dict with every LoRA adapter added into its base weight (``W + alpha/r * B A``) and the
    adapter entries removed: the state dict of a plain UNet. The model itself is not modified."""
    layers = _lora_layers(unet)
    state = {k: v.detach() for k, v in unet.state_dict().items()}
    for name, layer in layers.items():
        prefix = f"{name}." if name else ""
        for key in [k for k in state if k.startswith(prefix) and _LORA_KEY.search("." + k[len(prefix) :])]:
            del state[key]
        base = f"{prefix}base_layer."
        for key in [k for k in state if k.startswith(base)]:
            state[prefix + key[len(base) :]] = state.pop(key)
        weight = state[f"{prefix}weight"]
        with torch.no_grad():
            for adapter in layer.active_adapters:
                weight = weight + layer.get_delta_weight(adapter).to(weight.dtype)
        state[f"{prefix}weight"] = weight
    return state


def merge_adapters(unet: nn.Module) -> None:
    """Add the LoRA adapters into the UNet's weights and remove them, in place (the UNet is a plain one after)."""
    layers = _lora_layers(unet)
    for name, layer in layers.items():
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, layer.get_base_layer())
