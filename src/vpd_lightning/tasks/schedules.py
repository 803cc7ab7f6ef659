"""Learning-rate schedules of the VPD recipes, as ``LambdaLR`` factors stepped every iteration."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["poly_factor", "poly_schedule", "vpd_depth_factor", "vpd_depth_schedule"]


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


def poly_factor(
    step: int, total_steps: int, power: float = 1.0, warmup_steps: int = 0, warmup_ratio: float = 1e-6
) -> float:
    """mmcv's ``PolyLrUpdaterHook`` (min_lr 0) with its linear warm-up, as a factor of the base lr.

    ``step`` is mmcv's 0-based ``runner.iter``: ``regular = (1 - step / total) ** power`` and, during the first
    ``warmup_steps``, ``regular * (1 - (1 - step / warmup_steps) * (1 - warmup_ratio))``.
    """
    regular = max(1.0 - step / max(total_steps, 1), 0.0) ** power
    if step < warmup_steps:
        return regular * (1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio))
    return regular


def poly_schedule(
    optimizer: Optimizer,
    *,
    total_steps: int,
    power: float = 1.0,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
    max_epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> LambdaLR:
    """Polynomial decay to 0 over ``total_steps`` iterations, with optional linear warm-up.

    VPD ADE20K: power 1.0, 1500 warm-up iterations from ratio 1e-6 (mmseg ``schedule_80k``); VPD referring:
    power 0.9, no warm-up (``LambdaLR`` of LAVT). ``max_epochs``/``steps_per_epoch`` are accepted and unused.
    """
    del max_epochs, steps_per_epoch
    return LambdaLR(optimizer, lambda i: poly_factor(i, total_steps, power, warmup_steps, warmup_ratio))
