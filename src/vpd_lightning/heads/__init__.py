"""Task heads on the diffusion backbone's pyramid."""

from vpd_lightning.heads.depth import DepthDecoder, VPDDepthHead
from vpd_lightning.heads.fpn import FPN, ConvModule, FPNHead
from vpd_lightning.heads.refer import SimpleDecoding

__all__ = ["FPN", "ConvModule", "DepthDecoder", "FPNHead", "SimpleDecoding", "VPDDepthHead"]
