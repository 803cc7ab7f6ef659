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
    window_batch_size: int = 1,
) -> torch.Tensor:
    """mmseg's ``slide_inference``: logits of overlapping windows averaged over their overlap.

    Windows of ``crop_size`` every ``stride`` pixels, the last one aligned to the border; ``model`` maps a
    ``[B, 3, h, w]`` window to ``[B, C, h, w]`` logits. A window smaller than the crop (an image smaller than the
    crop) is padded at the bottom/right with ``pad_value`` to the full crop size — the size the model was
    trained on — and its logits cropped back. Returns ``[B, C, H, W]`` logits.

    ``window_batch_size`` windows go through ``model`` in one call (``window_batch_size x B`` images): fewer
    passes, the same logits up to kernel rounding (the model must not mix images of a batch: BatchNorm in eval
    mode, no batch statistics). 1 (default) is mmseg's one window per pass.
    """
    if window_batch_size < 1:
        raise ValueError(f"window_batch_size must be >= 1, got {window_batch_size}")
    b, _, h_img, w_img = image.shape
    h_crop, w_crop = crop_size
    h_stride, w_stride = stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    boxes = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * h_stride + h_crop, h_img)
            x2 = min(wi * w_stride + w_crop, w_img)
            boxes.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    logits = image.new_zeros(b, num_classes, h_img, w_img)
    count = image.new_zeros(1, 1, h_img, w_img)
    for first in range(0, len(boxes), window_batch_size):
        chunk = boxes[first : first + window_batch_size]
        windows = []
        for y1, y2, x1, x2 in chunk:
            window = image[:, :, y1:y2, x1:x2]
            hh, ww = window.shape[-2:]
            if (hh, ww) != (h_crop, w_crop):
                window = F.pad(window, (0, w_crop - ww, 0, h_crop - hh), value=pad_value)
            windows.append(window)
        outs = model(torch.cat(windows) if len(windows) > 1 else windows[0]).split(b)
        for (y1, y2, x1, x2), out in zip(chunk, outs):
            logits[:, :, y1:y2, x1:x2] += out[..., : y2 - y1, : x2 - x1]
            count[:, :, y1:y2, x1:x2] += 1
    return logits / count
