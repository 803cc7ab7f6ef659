"""The Stable Diffusion families the backbone accepts, and how to tell them apart from a UNet configuration.

===========  ===============================================  ======  =======  ==============================
family       default hub id                                   native  context  text side
===========  ===============================================  ======  =======  ==============================
sd15         stable-diffusion-v1-5/stable-diffusion-v1-5      512     768      CLIP ViT-L/14, last layer
sd21         stabilityai/stable-diffusion-2-1                 768     1024     OpenCLIP ViT-H, penultimate
sd21_base    stabilityai/stable-diffusion-2-1-base            512     1024     OpenCLIP ViT-H, penultimate
sdxl         stabilityai/stable-diffusion-xl-base-1.0         1024    2048     CLIP ViT-L + OpenCLIP ViT-bigG,
                                                                               penultimate layers concatenated
===========  ===============================================  ======  =======  ==============================

SD 2.x's diffusers text encoder already stops at OpenCLIP's penultimate layer (23 of 24 layers, then the final
LayerNorm), so its ``last_hidden_state`` is SD 2's context, as SD-1.5's is. SDXL's context is built by
:class:`~vpd_lightning.backbone.text.DualTextEncoder`. The *topology* (``sd1``, ``sd2``, ``sdxl``) is what a UNet
configuration determines; ``sd21`` and ``sd21_base`` share one (they differ in weights, prediction type and
native size), so any fine-tune of a family loads as that family. Component configurations of each family are
shipped in ``sd_configs/<family>`` for single-file checkpoints offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FAMILIES", "Family", "check_family", "config_dir", "family_of_unet", "get_family", "topology_of_unet"]

CONFIG_ROOT = Path(__file__).resolve().parent / "sd_configs"


@dataclass(frozen=True)
class Family:
    """One Stable Diffusion family: its default weights, native resolution and text side."""

    name: str
    hub_id: str
    topology: str
    native_size: int
    context_dim: int
    #: text encoders (subfolders) whose penultimate/last states make the context
    text_encoders: tuple[str, ...] = ("text_encoder",)
    tokenizer_pad: str = "<|endoftext|>"
    description: str = ""
    #: activations of one image at ``native_size`` / one SD-1.5 image at 512^2: the ratio of the bytes autograd
    #: saves in the full-size depth model's forward, counted on the meta device (``vpd_lightning.memory.
    #: family_activation_bytes``; tests/test_memory_presets.py recounts it), rounded up to 0.01
    activation_scale: float = 1.0

    @property
    def config_dir(self) -> Path:
        return CONFIG_ROOT / self.name


FAMILIES: dict[str, Family] = {
    "sd15": Family(
        "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd1", 512, 768, description="Stable Diffusion v1.5"
    ),
    "sd21": Family(
        "sd21", "stabilityai/stable-diffusion-2-1", "sd2", 768, 1024, tokenizer_pad="!",
        description="Stable Diffusion 2.1 (768, v-prediction)", activation_scale=2.25,
    ),
    "sd21_base": Family(
        "sd21_base", "stabilityai/stable-diffusion-2-1-base", "sd2", 512, 1024, tokenizer_pad="!",
        description="Stable Diffusion 2.1-base (512, epsilon)",
    ),
    "sdxl": Family(
        "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024, 2048,
        text_encoders=("text_encoder", "text_encoder_2"), description="Stable Diffusion XL base 1.0",
        activation_scale=6.9,
    ),
}  # fmt: skip


def get_family(name: str) -> Family:
    """The family called ``name``; a clear error listing the valid names otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"backbone.family must be one of {', '.join(FAMILIES)}; got '{name}'")
    return FAMILIES[name]


def config_dir(name: str) -> Path:
    """The shipped component configurations of a family (``sd_configs/<name>``)."""
    return get_family(name).config_dir


def _get(config: Any, key: str, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def topology_of_unet(config: Any) -> str:
    """``sdxl`` (added text/time conditioning), ``sd2`` (linear attention projections) or ``sd1``."""
    if _get(config, "addition_embed_type") == "text_time":
        return "sdxl"
    if _get(config, "use_linear_projection", False):
        return "sd2"
    return "sd1"


def family_of_unet(config: Any) -> str:
    """The family a UNet configuration belongs to (``sd21`` for the 2.x topology at 96-latent native size, else
    ``sd21_base``)."""
    topology = topology_of_unet(config)
    if topology == "sd2":
        return "sd21" if _get(config, "sample_size") == 96 else "sd21_base"
    return {"sd1": "sd15", "sdxl": "sdxl"}[topology]


def describe_unet(config: Any) -> str:
    """A short description of a UNet configuration, for error messages."""
    return (
        f"{len(_get(config, 'block_out_channels'))} levels, context width {_get(config, 'cross_attention_dim')}, "
        f"use_linear_projection={_get(config, 'use_linear_projection', False)}, "
        f"addition_embed_type={_get(config, 'addition_embed_type')}"
    )


def check_family(name: str | None, config: Any, where: str = "the UNet") -> str:
    """The family of a UNet configuration, checked against the requested ``name`` (``None``: whatever it is).

    A UNet of another topology is refused with a message naming both families; ``sd21`` and ``sd21_base``
    accept each other's UNets (same topology: the requested name is kept)."""
    found = family_of_unet(config)
    if name is None:
        return found
    family = get_family(name)
    if family.topology != FAMILIES[found].topology:
        same = [f for f, info in FAMILIES.items() if info.topology == FAMILIES[found].topology]
        raise ValueError(
            f"backbone.family={name} ({family.description}) but {where} is a {' / '.join(same)} UNet "
            f"({describe_unet(config)}); choose backbone={' or '.join(same)}, or point sd_path at {name} weights"
        )
    return name
