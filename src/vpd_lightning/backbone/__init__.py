"""The shared diffusion backbone: Stable Diffusion's UNet and VAE encoder as a perception backbone."""

from vpd_lightning.backbone.attention import CaptureAttnProcessor, CrossAttentionStore
from vpd_lightning.backbone.diffusion_backbone import ATTENTION_LEVELS, DiffusionBackbone
from vpd_lightning.backbone.loading import (
    DEFAULT_SD_PATH,
    WeightsNotFoundError,
    load_text_encoder,
    load_tokenizer,
    load_unet,
    load_vae,
)
from vpd_lightning.backbone.text_adapter import TextAdapter

__all__ = [
    "ATTENTION_LEVELS",
    "DEFAULT_SD_PATH",
    "CaptureAttnProcessor",
    "CrossAttentionStore",
    "DiffusionBackbone",
    "TextAdapter",
    "WeightsNotFoundError",
    "load_text_encoder",
    "load_tokenizer",
    "load_unet",
    "load_vae",
]
