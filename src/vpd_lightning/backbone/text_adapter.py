"""VPD's text adapter: a residual MLP that refines frozen text embeddings, ``e + gamma * MLP(e)``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TextAdapter"]


class TextAdapter(nn.Module):
    """``c = e + gamma ⊙ MLP(e)`` with ``MLP = Linear(D, D) -> GELU -> Linear(D, D)``.

    ``gamma`` is a learnable per-channel vector initialised to ``gamma_init`` (VPD: 1e-4), so the adapter
    starts as the identity. The linear layers keep PyTorch's default initialisation, as in the original.
    Parameter names (``fc.0``, ``fc.2``, ``gamma``) follow the original's ``text_adapter.fc`` layout.

    Args:
        dim: embedding width (768 for CLIP ViT-L/14).
        hidden_dim: MLP hidden width (VPD: ``dim``).
        gamma_init: initial value of every entry of ``gamma``.
    """

    def __init__(self, dim: int = 768, hidden_dim: int | None = None, gamma_init: float = 1e-4) -> None:
        super().__init__()
        hidden_dim = hidden_dim or dim
        self.fc = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), float(gamma_init)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Refine ``embeddings`` of shape ``[..., D]``."""
        return embeddings + self.gamma * self.fc(embeddings)
