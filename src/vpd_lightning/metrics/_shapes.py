"""Shape handling shared by the metrics: ``pred``/``target`` pairs to ``[B, H, W]``."""

from __future__ import annotations

from torch import Tensor


def paired_bhw(pred: Tensor, target: Tensor, metric: str, single: bool = True) -> tuple[Tensor, Tensor]:
    """``pred`` and ``target`` as ``[B, H, W]`` of the same shape, or a ``ValueError`` naming both shapes.

    Accepts ``[B, 1, H, W]`` and ``[B, H, W]``, and with ``single`` also one ``[H, W]`` map.
    """
    accepted = "[B, 1, H, W], [B, H, W] or [H, W]" if single else "[B, 1, H, W] or [B, H, W]"
    shapes = f"pred: {tuple(pred.shape)}, target: {tuple(target.shape)}"

    def to_bhw(x: Tensor, name: str) -> Tensor:
        if x.ndim == 4 and x.shape[1] == 1:
            return x[:, 0]
        if x.ndim == 3:
            return x
        if x.ndim == 2 and single:
            return x[None]
        raise ValueError(
            f"{metric}.update expects `pred` and `target` of shape {accepted}; got `{name}` with an unsupported "
            f"shape ({shapes})"
        )

    p, g = to_bhw(pred, "pred"), to_bhw(target, "target")
    if p.shape != g.shape:
        raise ValueError(
            f"{metric}.update expects `pred` and `target` with the same [B, H, W] shape (after removing a singleton "
            f"channel dim{' / adding a batch dim' if single else ''}); got {shapes}"
        )
    return p, g
