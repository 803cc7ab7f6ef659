"""Referring segmentation: decoder shapes/channels, context from CLIP tokens, loss, parameter groups."""

from __future__ import annotations

import functools

import pytest
import torch

from vpd_lightning.backbone import DiffusionBackbone, load_text_encoder
from vpd_lightning.heads import SimpleDecoding
from vpd_lightning.tasks import ReferringSegmentationTask


@pytest.fixture(scope="module")
def task(tiny_sd_dir):
    torch.manual_seed(0)
    return ReferringSegmentationTask(
        DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32"),
        SimpleDecoding,
        load_text_encoder(tiny_sd_dir),
        optimizer=functools.partial(torch.optim.AdamW, lr=5e-5, weight_decay=1e-2),
        max_tokens=8,
    )


@pytest.mark.parametrize(("tokens", "first"), [(40, 2560 + 40), (77, 2560 + 77)])
def test_decoder_channels_sd15(tokens, first):
    """VPD's decoder on SD-1.5 + A32: neck_dim [320, 640+L, 1280+L, 1280], hidden 640."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone.tiny import TINY_VAE_CONFIG, sd15_unet_config

    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
    channels = DiffusionBackbone(unet, AutoencoderKL(**TINY_VAE_CONFIG)).out_channels(tokens)
    assert channels == [320, 640 + tokens, 1280 + tokens, 1280]
    with torch.device("meta"):
        head = SimpleDecoding(channels)
    assert head.conv1_4.in_channels == first and head.conv1_4.out_channels == 640
    assert head.conv1_3.in_channels == 640 + 640 + tokens
    assert head.conv1_2.in_channels == 640 + 320
    assert head.conv1_1.out_channels == 2 and head.conv1_1.bias is not None
    assert head.conv1_4.bias is None  # 3x3 convs without bias, followed by BN


def test_decoder_output_size():
    head = SimpleDecoding([16, 24, 40, 32])
    feats = [torch.randn(2, c, s, s) for c, s in zip([16, 24, 40, 32], [64, 32, 16, 8])]
    assert head(feats).shape == (2, 2, 64, 64)


def test_forward_context_and_frozen_text_encoder(task, tiny_sd_dir):
    from vpd_lightning.backbone import load_tokenizer

    tokenizer = load_tokenizer(tiny_sd_dir)
    tokens = tokenizer(
        ["the red circle", "blue square on the left"],
        padding="max_length",
        max_length=8,
        truncation=True,
        return_tensors="pt",
    )
    context = task.context(tokens.input_ids)
    assert context.shape == (2, 8, 32)
    expected = task.text_encoder(input_ids=tokens.input_ids).last_hidden_state
    assert torch.allclose(context, task.text_adapter(expected))
    logits = task(torch.rand(2, 3, 64, 64), tokens.input_ids, tokens.attention_mask)
    assert logits.shape == (2, 2, 64, 64)
    assert task.head.conv1_3.in_channels == 64 // 2 + 32 + 8  # hidden + stride-16 features + 8 token maps
    assert not any(p.requires_grad for p in task.text_encoder.parameters())
    task.train()
    assert not task.text_encoder.training and task.head.training
    with pytest.raises(ValueError, match="8"):
        task.context(tokens.input_ids[:, :5])


def test_padding_mask_changes_the_output(task, tiny_sd_dir):
    from vpd_lightning.backbone import load_tokenizer

    tokens = load_tokenizer(tiny_sd_dir)(["red"], padding="max_length", max_length=8, return_tensors="pt")
    image = torch.rand(1, 3, 64, 64)
    task.eval()
    with torch.no_grad():
        attended = task(image, tokens.input_ids, tokens.attention_mask)
        task.mask_padding = True
        masked = task(image, tokens.input_ids, tokens.attention_mask)
        task.mask_padding = False
    assert not torch.allclose(attended, masked)


def test_weighted_loss_hand_computed(task):
    import math

    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    mask = torch.tensor([[[0, 1]]])
    # torch's weighted mean: sum(w_y * l) / sum(w_y) = ln 2 when both losses equal
    assert task.loss(logits, mask).item() == pytest.approx(math.log(2))
    logits[0, 1, 0, 1] = math.log(3.0)  # p(target) = 3/4 at the target pixel
    expected = (0.9 * math.log(2) + 1.1 * -math.log(0.75)) / (0.9 + 1.1)
    assert task.loss(logits, mask).item() == pytest.approx(expected)


def test_parameter_groups(task):
    by_id = {id(p): g for g in task.parameter_groups() for p in g["params"]}
    for name, p in task.named_parameters():
        if name.startswith("text_encoder.") or name.startswith("backbone.vae."):
            assert id(p) not in by_id, name
            continue
        if not p.requires_grad:
            continue
        g = by_id[id(p)]
        assert g["lr"] == pytest.approx(5e-5)  # the UNet trains at the full lr by default (as released)
        assert g["weight_decay"] == (0.0 if "norm" in name else 1e-2), name
    task.unet_lr_mult = 0.01
    try:
        by_id = {id(p): g for g in task.parameter_groups() for p in g["params"]}
        assert by_id[id(task.backbone.unet.conv_in.weight)]["lr"] == pytest.approx(5e-7)
    finally:
        task.unet_lr_mult = 1.0
