"""Multi-GPU helpers: the FSDP wrapping unit of the diffusion UNet."""

from __future__ import annotations

from torch import nn

__all__ = ["UNET_BLOCK_CLASSES", "unet_block_classes", "unet_wrap_policy"]

#: diffusers UNet blocks (SD-1.5 uses all five): each becomes one FSDP unit / activation-checkpointing unit
UNET_BLOCK_CLASSES = (
    "CrossAttnDownBlock2D",
    "DownBlock2D",
    "UNetMidBlock2DCrossAttn",
    "CrossAttnUpBlock2D",
    "UpBlock2D",
)


def unet_block_classes(extra: list[str] | None = None) -> set[type[nn.Module]]:
    """The UNet block classes as a set (Lightning's ``FSDPStrategy`` turns a set into a ``ModuleWrapPolicy``).

    Args:
        extra: more classes as ``module.path.ClassName`` (e.g. ``transformers.models.clip.modeling_clip.
            CLIPEncoderLayer`` to shard the referring task's text encoder too).
    """
    from diffusers.models.unets import unet_2d_blocks
    from hydra.utils import get_class

    classes = {getattr(unet_2d_blocks, name) for name in UNET_BLOCK_CLASSES}
    for path in extra or []:
        try:
            classes.add(get_class(path))
        except Exception as err:  # hydra raises ImportError/ValueError variants
            raise ValueError(f"unet_block_classes: cannot import extra wrapping class '{path}': {err}") from err
    return classes


def unet_wrap_policy(extra: list[str] | None = None):
    """``ModuleWrapPolicy`` over :func:`unet_block_classes` (for use with plain torch FSDP)."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return ModuleWrapPolicy(unet_block_classes(extra))
