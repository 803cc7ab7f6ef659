"""VPD's depth head (GLPDepth / SimpleBaseline style): fuse the pyramid at stride 32, deconvolve, sigmoid x max.

Shapes for a 480x480 crop padded to 512 (vpd-reference §4.2): stride-8 [B,320,64,64] -> two stride-2 convs;
stride-16 [B,640,32,32] -> one stride-2 conv; stride-32 [B,1280,16,16] concatenated with the nearest-upsampled
stride-64 [B,1280,8,8]; 320 + 640 + 2560 = 3520 channels -> 1x1 conv to 1536 -> GroupNorm(16) -> ReLU ->
crop to the unpadded size (15x15) -> 3 x [ConvTranspose(k2, s2) -> BN -> ReLU] to 32 channels -> 3x3 conv to
192 -> BN -> ReLU -> bilinear x2 twice -> 3x3 conv -> ReLU -> 3x3 conv to 1 -> sigmoid x max_depth.
Parameter names follow the original checkpoint (``layer1``, ``layer2``, ``out_layer``, ``decoder.*``,
``last_layer_depth``), so converted weights map one to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthDecoder", "VPDDepthHead"]

_DECONV_CFG = {4: (1, 0), 3: (1, 1), 2: (0, 0)}  # kernel -> (padding, output_padding)


class DepthDecoder(nn.Module):
    """Deconvolution decoder: ``len(num_filters)`` x (x2 deconv + BN + ReLU), conv + BN + ReLU, bilinear x4."""

    def __init__(self, in_channels: int, out_channels: int, num_filters: Sequence[int], deconv_kernels: Sequence[int]):
        super().__init__()
        if len(num_filters) != len(deconv_kernels):
            raise ValueError("head.num_filters and head.deconv_kernels must have the same length")
        layers: list[nn.Module] = []
        planes_in = in_channels
        for planes, kernel in zip(num_filters, deconv_kernels, strict=True):
            if kernel not in _DECONV_CFG:
                raise ValueError(f"head.deconv_kernels entries must be 2, 3 or 4, got {kernel}")
            padding, output_padding = _DECONV_CFG[kernel]
            layers += [
                nn.ConvTranspose2d(planes_in, planes, kernel, 2, padding, output_padding, bias=False),
                nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True),
            ]
            planes_in = planes
        self.deconv_layers = nn.Sequential(*layers)
        self.conv_layers = nn.Sequential(
            nn.Conv2d(planes_in, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layers(self.deconv_layers(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class VPDDepthHead(nn.Module):
    """The VPD depth head on a pyramid of strides 8, 16, 32[, 64, ...] (SD-1.x/2.x: 4 levels, SDXL: 3).

    Levels 0 and 1 are brought to stride 32 by two and one stride-2 convolutions; level 2 and every coarser level
    (nearest-upsampled to level 2's size) are concatenated to them.

    Args:
        in_channels: channels of the backbone outputs, at least three (``backbone.out_channels(num_tokens)``).
        max_depth: depth range of the sigmoid output, in metres (NYUv2: 10).
        fusion_channels: width of the fused stride-32 map (VPD: 1536 = 8 x 192).
        num_filters: deconvolution widths (VPD: 32, 32, 32).
        deconv_kernels: deconvolution kernels (VPD: 2, 2, 2).
        head_channels: width after the decoder conv (VPD: 192).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        max_depth: float = 10.0,
        fusion_channels: int = 1536,
        num_filters: Sequence[int] = (32, 32, 32),
        deconv_kernels: Sequence[int] = (2, 2, 2),
        head_channels: int = 192,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) < 3:
            raise ValueError(f"VPDDepthHead needs at least 3 input levels, got in_channels={in_channels}")
        c8, c16 = in_channels[:2]
        if c8 % 16 or fusion_channels % 16:
            raise ValueError(
                f"VPDDepthHead uses GroupNorm(16): the stride-8 channels ({c8}) and head.fusion_channels "
                f"({fusion_channels}) must be multiples of 16"
            )
        self.max_depth = float(max_depth)
        self.total_stride = 2 ** len(num_filters) * 4  # decoder upsampling: deconvs x bilinear x4
        self.layer1 = nn.Sequential(
            nn.Conv2d(c8, c8, 3, stride=2, padding=1), nn.GroupNorm(16, c8), nn.ReLU(), nn.Conv2d(c8, c8, 3, 2, 1)
        )
        self.layer2 = nn.Sequential(nn.Conv2d(c16, c16, 3, stride=2, padding=1))
        self.out_layer = nn.Sequential(
            nn.Conv2d(sum(in_channels), fusion_channels, 1), nn.GroupNorm(16, fusion_channels), nn.ReLU()
        )
        for m in [*self.layer1, *self.layer2, *self.out_layer]:
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.decoder = DepthDecoder(fusion_channels, head_channels, num_filters, deconv_kernels)
        self.last_layer_depth = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, 1, 1),
            nn.ReLU(inplace=False),
            nn.Conv2d(head_channels, 1, 3, 1, 1),
        )
        for m in self.last_layer_depth:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """Depth in metres, ``[B, 1, *output_size]``.

        ``output_size`` is the size of the real (unpadded) image. The fused stride-32 map is cropped to
        ``ceil(size / 32)`` (VPD crops 16 -> 15 for a 480 crop padded to 512) and the output to ``output_size``.
        """
        f8, f16, f32, *coarser = features
        coarse = torch.cat([f32, *(F.interpolate(f, size=f32.shape[-2:], mode="nearest") for f in coarser)], dim=1)
        x = torch.cat([self.layer1(f8), self.layer2(f16), coarse], dim=1)
        x = self.out_layer(x)
        h, w = output_size
        stride = self.total_stride
        x = x[..., : math.ceil(h / stride), : math.ceil(w / stride)]
        depth = self.last_layer_depth(self.decoder(x))
        # the output in fp32 even under bf16 autocast: bf16 would quantise 10 m to steps of 4 cm
        depth = torch.sigmoid(depth[..., :h, :w].float()) * self.max_depth
        return depth
