"""Learning-rate schedules of the VPD recipes, as ``LambdaLR`` factors stepped every iteration."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["vpd_depth_factor", "vpd_depth_schedule"]


def vpd_depth_factor(step: int, max_lr: float, min_lr: float, half_steps: int, power: float = 0.9) -> float:
    """VPD depth (``depth/train.py``): rise from ``min_lr`` to ``max_lr`` over ``half_steps``, fall back over the
    next ``half_steps``, flat at ``min_lr`` after. ``step`` counts from 1, as the original's ``global_step``.
    Returns the factor ``lr / max_lr``."""
    half_steps = max(int(half_steps), 1)
    if step < half_steps:
        lr = (max_lr - min_lr) * (step / half_steps) ** power + min_lr
    else:
        lr = max(min_lr, (min_lr - max_lr) * (step / half_steps - 1) ** power + max_lr)
    return lr / max_lr


def vpd_depth_schedule(
    optimizer: Optimizer,
    *,
    total_steps: int,
    max_epochs: int | None = None,
    steps_per_epoch: int | None = None,
    min_lr: float = 3e-5,
    power: float = 0.9,
) -> LambdaLR:
    """The depth schedule for ``optimizer`` whose groups' lrs are ``max_lr x lr_scale``.

    The rise lasts ``max_epochs // 2`` epochs (12 of 25 in the paper) when epochs are known, else half of
    ``total_steps``. Every group is scaled by the same factor, so a group at ``lr_scale`` peaks at
    ``max_lr x lr_scale``, as in the original.
    """
    max_lr = optimizer.defaults["lr"]  # the base lr; groups hold max_lr x lr_scale
    if max_epochs and steps_per_epoch:
        half = (max_epochs // 2) * steps_per_epoch
    else:
        half = total_steps // 2
    # LambdaLR multiplies each group's own initial lr (max_lr x lr_scale) by the factor.
    return LambdaLR(optimizer, lambda i: vpd_depth_factor(i + 1, max_lr, min_lr, half, power))
