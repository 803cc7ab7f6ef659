"""Exact byte counts of parameters, gradients and optimizer state (vpd_lightning.memory), checked by hand and
against the real optimizers' state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vpd_lightning.memory import count_training_bytes, optimizer_kind, optimizer_state_bytes


def _step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p)
    optimizer.step()


def test_linear_adamw_by_hand():
    # Linear(64, 64): weight n=4096, bias 64. params 4n, grads 4n, AdamW 8n + a 4-byte fp32 step per tensor.
    model = nn.Linear(64, 64)
    count = count_training_bytes(model, "adamw")
    n = 64 * 64 + 64
    assert count.trainable_params == n
    assert count.param_bytes == 4 * n
    assert count.grad_bytes == 4 * n
    assert count.optimizer_bytes == 8 * n + 2 * 4
    assert count.total == 16 * n + 8
    opt = torch.optim.AdamW(model.parameters())
    _step(model, opt)
    assert optimizer_state_bytes(opt) == count.optimizer_bytes


def test_linear_adamw8bit_by_hand_and_against_torchao():
    ao = pytest.importorskip("torchao.optim")
    # weight: 4096 elements, a multiple of the 256-element block -> two 8-bit states of 4096 uint8 codes,
    # 4096/256 = 16 fp32 scales and a 256-entry fp32 map each; the bias (64 < 4096) stays fp32 as in AdamW.
    model = nn.Linear(64, 64)
    count = count_training_bytes(model, "adamw8bit")
    weight_state = 2 * (4096 + 16 * 4 + 256 * 4) + 4
    bias_state = 2 * 64 * 4 + 4
    assert count.optimizer_bytes == weight_state + bias_state == 10_888
    model_meta = nn.Linear(64, 64, device="meta")  # the count needs no memory
    assert count_training_bytes(model_meta, "adamw8bit") == count
    opt = ao.AdamW8bit(model.parameters(), lr=1e-3)
    _step(model, opt)
    assert optimizer_state_bytes(opt) == count.optimizer_bytes


def test_frozen_and_half_parameters():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    model[0].requires_grad_(False)
    model[0].to(torch.bfloat16)
    count = count_training_bytes(model, "adamw")
    assert count.frozen_params == count.trainable_params == 72
    assert count.param_bytes == 72 * 2 + 72 * 4
    assert count.grad_bytes == 72 * 4
    assert count.optimizer_bytes == 72 * 8 + 2 * 4
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    _step(model, opt)
    assert optimizer_state_bytes(opt) == count.optimizer_bytes


def test_optimizer_kind():
    assert optimizer_kind("torch.optim.AdamW") == "adamw"
    assert optimizer_kind(torch.optim.AdamW) == "adamw"
    assert optimizer_kind("torchao.optim.AdamW8bit") == "adamw8bit"
    with pytest.raises(ValueError, match="no memory rule for optimizer 'my.Lion'"):
        optimizer_kind("my.Lion")
