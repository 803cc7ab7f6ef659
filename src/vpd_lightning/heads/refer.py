"""LAVT's ``SimpleDecoding`` mask predictor as VPD uses it for referring segmentation (vpd-reference §5.2).

Three stages, coarse to fine: upsample (bilinear, ``align_corners=True``) to the next level, concatenate its
features, two 3x3 conv (no bias) + BN + ReLU; then a 1x1 conv to 2 classes (background, target). With VPD's
channel list ``[320, 640+L, 1280+L, 1280]`` the hidden width is 1280 / factor = 640 and the first convs take
2560+L, 1280+L and 960 channels. Parameter names follow the original checkpoint (``conv1_4``, ``bn1_4``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SimpleDecoding"]


class SimpleDecoding(nn.Module):
    """Args:
    in_channels: channels of the backbone outputs, strides 8, 16, 32[, 64] (``backbone.out_channels(L)``; SDXL
        gives three levels: two stages, named ``3`` and ``2``).
    factor: hidden width = ``in_channels[-1] // factor`` (VPD: 2).
    num_classes: output channels (2: background, referred object).
    """

    def __init__(self, in_channels: Sequence[int], factor: int = 2, num_classes: int = 2) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) < 2:
            raise ValueError(f"SimpleDecoding needs at least 2 input levels, got in_channels={in_channels}")
        n = len(in_channels)
        hidden = in_channels[-1] // factor
        #: stage names, coarse to fine (VPD's four levels: 4, 3, 2)
        self.stages = [str(k) for k in range(n, 1, -1)]
        inputs = [in_channels[-1] + in_channels[-2]] + [hidden + in_channels[k - 2] for k in range(n - 1, 1, -1)]
        for name, cin in zip(self.stages, inputs, strict=True):
            setattr(self, f"conv1_{name}", nn.Conv2d(cin, hidden, 3, padding=1, bias=False))
            setattr(self, f"bn1_{name}", nn.BatchNorm2d(hidden))
            setattr(self, f"relu1_{name}", nn.ReLU())
            setattr(self, f"conv2_{name}", nn.Conv2d(hidden, hidden, 3, padding=1, bias=False))
            setattr(self, f"bn2_{name}", nn.BatchNorm2d(hidden))
            setattr(self, f"relu2_{name}", nn.ReLU())
        self.conv1_1 = nn.Conv2d(hidden, num_classes, 1)

    def _stage(self, x: torch.Tensor, skip: torch.Tensor, name: str) -> torch.Tensor:
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = torch.cat([x, skip], dim=1)
        x = getattr(self, f"relu1_{name}")(getattr(self, f"bn1_{name}")(getattr(self, f"conv1_{name}")(x)))
        return getattr(self, f"relu2_{name}")(getattr(self, f"bn2_{name}")(getattr(self, f"conv2_{name}")(x)))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, num_classes, H/8, W/8]`` from the pyramid (highest resolution first)."""
        features = list(features)
        x = features[-1]
        for name in self.stages:  # stage k fuses level k - 2 (0-based) into the coarser result
            x = self._stage(x, features[int(name) - 2], name)
        return self.conv1_1(x)
