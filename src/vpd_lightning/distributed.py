"""Multi-process helpers: the FSDP wrapping unit of the diffusion UNet, and a batch norm synchronised over any
process group (CPU/gloo included)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn

__all__ = ["UNET_BLOCK_CLASSES", "AllReduceBatchNorm", "unet_block_classes", "unet_wrap_policy"]

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


class _AllReduceBatchNormMixin:
    """Training-mode batch statistics summed over all processes (a differentiable all-reduce), as
    ``torch.nn.SyncBatchNorm`` computes them; evaluation and single-process use stay plain batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = self.num_features
        dims = [0, *range(2, x.ndim)]
        x64 = x.double()
        count = torch.full((1,), x.numel() / c, dtype=torch.float64, device=x.device)
        stats = all_reduce(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))  # SUM over processes
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.to(x.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_((var * n / (n - 1)).to(x.dtype), alpha=m)
        shape = [1, c] + [1] * (x.ndim - 2)
        y = ((x64 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


_SYNCED: dict[type, type] = {}


class AllReduceBatchNorm(LayerSync):
    """Lightning ``LayerSync`` plugin: synchronised batch norm for any backend, CPU/gloo included.

    ``Trainer(sync_batchnorm=True)`` uses ``torch.nn.SyncBatchNorm``, which DDP accepts only on GPUs; this
    plugin gives the heads the same global-batch statistics in CPU runs (``trainer=ddp_cpu``), so a 2-process
    run matches a 1-process run with the same global batch. On GPUs prefer ``sync_batchnorm: true``.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            cls = type(module)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, (nn.SyncBatchNorm, _AllReduceBatchNormMixin)
            ):
                if cls not in _SYNCED:
                    _SYNCED[cls] = type(f"AllReduce{cls.__name__}", (_AllReduceBatchNormMixin, cls), {})
                module.__class__ = _SYNCED[cls]
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        original = {synced: cls for cls, synced in _SYNCED.items()}
        for module in model.modules():
            if isinstance(module, _AllReduceBatchNormMixin):
                module.__class__ = original[type(module)]
        return model
