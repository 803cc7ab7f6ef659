"""Test-time helpers shared by the tasks: sliding-window inference and keep-ratio resizing."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["rescale_size", "slide_inference"]


def rescale_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep ratio: the largest size whose long side <= max(scale) and short side
    <= min(scale); returns ``(new_h, new_w)``."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def slide_inference(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    num_classes: int,
    crop_size: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    pad_value: float = 0.0,
) -> torch.Tensor:
    """mmseg's ``slide_inference``: logits of overlapping windows averaged over their overlap.

    Windows of ``crop_size`` every ``stride`` pixels, the last one aligned to the border; ``model`` maps a
    ``[B, 3, h, w]`` window to ``[B, C, h, w]`` logits. A window smaller than the crop (an image smaller than the
    crop) is padded at the bottom/right with ``pad_value`` to the full crop size — the size the model was
    trained on — and its logits cropped back. Returns ``[B, C, H, W]`` logits.
    """
    b, _, h_img, w_img = image.shape
    h_crop, w_crop = crop_size
    h_stride, w_stride = stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    logits = image.new_zeros(b, num_classes, h_img, w_img)
    count = image.new_zeros(1, 1, h_img, w_img)
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * h_stride + h_crop, h_img)
            x2 = min(wi * w_stride + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            window = image[:, :, y1:y2, x1:x2]
            hh, ww = window.shape[-2:]
            if (hh, ww) != (h_crop, w_crop):
                window = F.pad(window, (0, w_crop - ww, 0, h_crop - hh), value=pad_value)
            out = model(window)[..., :hh, :ww]
            logits[:, :, y1:y2, x1:x2] += out
            count[:, :, y1:y2, x1:x2] += 1
    return logits / count
