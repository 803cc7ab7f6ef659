"""FPN neck + Semantic FPN head, as mmsegmentation 0.x builds them for VPD's ADE20K model (vpd-reference §3.1).

Neck: 1x1 lateral convs (with bias) to 256 channels, top-down nearest-neighbour addition, 3x3 output convs;
Xavier-uniform initialisation. Head: per level ``max(1, log2(stride_i / stride_0))`` blocks of
[3x3 conv (no bias) -> BN -> ReLU (-> bilinear x2 for levels > 0)], summed at the finest level, Dropout2d(0.1),
1x1 conv to the classes (normal std 0.01). Module and parameter names follow mmseg (``lateral_convs.0.conv``,
``scale_heads.2.2.conv``, ``scale_heads.2.2.bn``, ``conv_seg``) so the original checkpoint maps one to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPN", "ConvModule", "FPNHead"]


class ConvModule(nn.Module):
    """conv (-> BN) (-> ReLU), with mmcv's attribute names ``conv``, ``bn``, ``activate``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: bool = False, act: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None
        if act:  # mmcv ConvModule: Kaiming for convs followed by ReLU
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class FPN(nn.Module):
    """Feature pyramid neck (mmseg ``FPN(in_channels, out_channels, num_outs=len(in_channels))``)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = [out_channels] * len(self.in_channels)
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in self.in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3) for _ in self.in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN expects {len(self.in_channels)} levels, got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]


class FPNHead(nn.Module):
    """Semantic FPN decode head (mmseg ``FPNHead``).

    Args:
        num_classes: output classes (ADE20K: 150).
        in_channels: channels of the neck outputs (VPD: 4 x 256; SDXL backbones give 3 levels).
        channels: width of the scale heads (VPD: 256).
        feature_strides: only their ratios matter (VPD's config says 4, 8, 16, 32 while the real strides are
            8 ... 64): they set 1, 1, 2, 3 conv blocks per level. ``None``: ``4, 8, 16, ...``, one per entry of
            ``in_channels`` (VPD's for four levels).
        dropout_ratio: Dropout2d before the classifier (VPD: 0.1).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int] = (256, 256, 256, 256),
        channels: int = 256,
        feature_strides: Sequence[int] | None = (4, 8, 16, 32),
        dropout_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if feature_strides is None:
            feature_strides = [4 * 2**i for i in range(len(in_channels))]
        if len(in_channels) != len(feature_strides):
            raise ValueError("head.in_channels and head.feature_strides must have the same length")
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate(feature_strides):
            length = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(ConvModule(in_channels[i] if k == 0 else channels, channels, 3, norm=True, act=True))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        output = self.scale_heads[0](inputs[0])
        for i in range(1, len(self.scale_heads)):
            output = output + F.interpolate(
                self.scale_heads[i](inputs[i]), size=output.shape[2:], mode="bilinear", align_corners=False
            )
        return self.conv_seg(self.dropout(output))
