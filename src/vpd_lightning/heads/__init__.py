"""Task heads on the diffusion backbone's pyramid."""

from vpd_lightning.heads.depth import DepthDecoder, VPDDepthHead

__all__ = ["DepthDecoder", "VPDDepthHead"]
