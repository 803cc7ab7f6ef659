"""Losses."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SiLogLoss"]


class SiLogLoss(nn.Module):
    """Scale-invariant log loss of GLPDepth / VPD: ``sqrt(mean(d^2) - lambd * mean(d)^2)``, ``d = ln gt - ln pred``.

    Computed over all valid pixels (``gt > 0``) of the batch at once: no per-image averaging, no x10 factor,
    no upper depth bound (vpd-reference §4.3).
    """

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target > 0).detach()
        if not valid.any():
            return pred.sum() * 0.0  # keeps the graph; a batch without valid depth adds nothing
        diff = torch.log(target[valid]) - torch.log(pred[valid])
        return torch.sqrt(torch.pow(diff, 2).mean() - self.lambd * torch.pow(diff.mean(), 2))
