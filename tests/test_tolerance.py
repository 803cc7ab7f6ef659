"""The float32 tolerances of tests/tolerance.py hold for real reorderings of a sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerance import EPS32, adamw_noise_atol, float32_rtol


@pytest.mark.parametrize("n", [100, 9216, 24576])
def test_reordered_float32_sums_agree_within_float32_rtol(n):
    values = np.random.default_rng(0).random(n, dtype=np.float32) + 0.5  # positive terms: no cancellation
    exact = values.astype(np.float64).sum()
    sequential = np.float32(0)
    for v in values:  # left to right, one rounding per addition
        sequential = np.float32(sequential + v)
    halves = np.float32(values[: n // 2].sum(dtype=np.float32) + values[n // 2 :].sum(dtype=np.float32))
    blocked = torch.from_numpy(values).sum().item()  # the CPU kernel's own (vectorised) order
    for total in (sequential, halves, blocked):
        assert abs(float(total) - exact) / exact <= float32_rtol(n)
    assert float32_rtol(n, passes=3) == pytest.approx(3 * n**0.5 * EPS32)


def test_adam_step_bound_covers_a_pure_noise_gradient():
    """A parameter driven by gradients of random sign moves by at most Adam's step bound summed over steps."""
    lrs = [1e-3, 5e-4, 2e-4]
    param = torch.zeros(1000, requires_grad=True)
    optimizer = torch.optim.AdamW([param], lr=lrs[0], weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        param.grad = torch.randn(1000, generator=generator) * 1e-4  # noise well above Adam's eps
        optimizer.step()
    assert param.abs().max().item() <= adamw_noise_atol(lrs)
    assert param.abs().max().item() > 0.5 * sum(lrs)  # the bound is not vacuous: noise does move weights by ~lr
