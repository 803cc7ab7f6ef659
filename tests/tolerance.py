"""Tolerances for comparing float32 results that were computed in a different order (other processes, batch
compositions, CPU kernels), derived from the arithmetic instead of from what one host printed.

A float32 sum of ``n`` terms carries a relative rounding error of at most ``(n - 1) * eps`` and, with rounding
errors that behave like independent random signs (the usual case, Higham §4.2), about ``sqrt(n) * eps``
(``eps = 2**-23``). Two computations that sum the same ``n`` terms in different orders (one process against the
all-reduced partial sums of two, AVX-512 against AVX2 kernels) therefore agree to about ``sqrt(n) * eps`` each
time such a sum enters the result. ``passes`` counts how often that happens: a training step whose gradients
sum over the batch's pixels carries the difference on into the weights and so into every later evaluation.
A real mismatch (another sample order, unsynchronised batch statistics, a loss averaged over another batch)
moves results by percent, orders of magnitude above these bounds.
"""

from __future__ import annotations

import math

#: float32 machine epsilon (spacing of floats at 1.0).
EPS32 = 2.0**-23


def float32_rtol(n_terms: int, passes: int = 1) -> float:
    """Relative tolerance for float32 results that went ``passes`` times through sums of ``n_terms`` terms
    taken in a different order: ``passes * sqrt(n_terms) * eps``."""
    if n_terms < 1 or passes < 1:
        raise ValueError("n_terms and passes must be >= 1")
    return passes * math.sqrt(n_terms) * EPS32


def adamw_noise_atol(learning_rates, betas: tuple[float, float] = (0.9, 0.999)) -> float:
    """Largest difference two runs can show in a parameter whose gradient is zero in exact arithmetic (a conv
    bias followed by batch norm, a weight the loss does not reach): its gradient is pure rounding noise, whose
    sign differs between summation orders, and Adam normalises any gradient to an update of at most
    ``lr * (1 - beta1) / sqrt(1 - beta2)`` per step (Kingma & Ba 2015, §2.1), so two runs can drift apart by up
    to that bound summed over the steps' learning rates (pass each step's largest group lr)."""
    beta1, beta2 = betas
    return float(sum(learning_rates)) * (1 - beta1) / math.sqrt(1 - beta2)
