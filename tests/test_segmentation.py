"""Semantic segmentation: FPN bookkeeping, head sizes, sliding windows, loss, parameter groups, schedule."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from vpd_lightning.backbone import DiffusionBackbone
from vpd_lightning.heads import FPN, FPNHead
from vpd_lightning.inference import rescale_size, slide_inference
from vpd_lightning.tasks import SemanticSegmentationTask
from vpd_lightning.tasks.schedules import poly_factor, poly_schedule


@pytest.fixture(scope="module")
def task(tiny_sd_dir):
    torch.manual_seed(0)
    backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32")
    return SemanticSegmentationTask(
        backbone,
        functools.partial(FPN, out_channels=16),
        functools.partial(FPNHead, channels=16),
        class_embeddings=torch.randn(6, 32),
        optimizer=functools.partial(torch.optim.AdamW, lr=8e-5, weight_decay=1e-3),
        crop_size=(64, 64),
        stride=(40, 40),
        test_scale=(256, 64),
    )


def test_fpn_channels_sd15_150_classes():
    """SD-1.5 + A32 + 150 class tokens: VPD's released FPN in_channels [320, 790, 1430, 1280]."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone.tiny import TINY_VAE_CONFIG, sd15_unet_config

    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
    backbone = DiffusionBackbone(unet, AutoencoderKL(**TINY_VAE_CONFIG))
    neck = FPN(backbone.out_channels(150))
    assert [m.conv.in_channels for m in neck.lateral_convs] == [320, 790, 1430, 1280]
    assert all(m.conv.out_channels == 256 and m.conv.bias is not None for m in neck.lateral_convs)
    head = FPNHead(150)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in s.modules()) for s in head.scale_heads]
    assert convs == [1, 1, 2, 3]
    assert head.conv_seg.weight.shape == (150, 256, 1, 1)
    # mmseg parameter names, so original checkpoints map one to one
    names = set(dict(head.named_parameters()))
    assert {"scale_heads.3.4.conv.weight", "scale_heads.3.4.bn.weight", "conv_seg.bias"} <= names


def test_head_output_size():
    neck, head = FPN([16, 24, 40, 32], 16), FPNHead(7, (16,) * 4, channels=16)
    feats = [torch.randn(2, c, s, s) for c, s in zip([16, 24, 40, 32], [64, 32, 16, 8])]
    out = head(neck(feats))
    assert out.shape == (2, 7, 64, 64)


def test_task_forward_and_context(task):
    logits = task(torch.rand(2, 3, 64, 96))
    assert logits.shape == (2, 6, 64, 96)
    assert task.context(2).shape == (2, 6, 32)
    assert task.neck.lateral_convs[1].conv.in_channels == 32 + 6  # A32 maps, one channel per class


def test_slide_inference_single_window_equals_whole_forward(task):
    task.eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        whole = task(image)
        slid = slide_inference(task, image, 6, crop_size=(64, 64), stride=(40, 40))
    assert torch.allclose(whole, slid, atol=1e-6)


def test_slide_inference_stitching_and_small_images():
    calls = []

    def pixelwise(x):
        calls.append(tuple(x.shape[-2:]))
        return torch.cat([x[:, :1] * 2, x[:, 1:2] - 1], dim=1)

    image = torch.rand(1, 3, 70, 150)
    out = slide_inference(pixelwise, image, 2, crop_size=(64, 64), stride=(40, 40))
    assert torch.allclose(out, pixelwise(image), atol=1e-6)  # overlaps average identical values
    # windows: rows at 0 and 6 (last aligned to the border); columns at 0, 40, 80, 86
    assert len(calls) == 1 + 2 * 4
    small = torch.rand(1, 3, 40, 48)
    calls.clear()
    out = slide_inference(pixelwise, small, 2, crop_size=(64, 64), stride=(40, 40), pad_value=0.5)
    assert calls == [(64, 64)]  # padded to the crop the model was trained on
    assert out.shape == (1, 2, 40, 48) and torch.allclose(out, pixelwise(small)[:, :, :40, :48])


def test_multiscale_flip_averages_probabilities(task, monkeypatch):
    def pixelwise(x):
        return torch.cat([x[:, :1], x[:, 1:2], torch.zeros_like(x[:, :1]), x[:, 2:3], x[:, :1] * 0, x[:, :1] * 0], 1)

    monkeypatch.setattr(task, "forward", pixelwise)
    task.hparams.test_ratios, task.hparams.test_flip = [1.0, 1.5], True
    try:
        image = torch.rand(1, 3, 64, 64)
        probs = task.predict_logits(image)
    finally:
        task.hparams.test_ratios, task.hparams.test_flip = [1.0], False
    assert probs.shape == (1, 6, 64, 64)
    assert torch.allclose(probs.sum(1), torch.ones(1, 64, 64), atol=1e-5)
    # at ratio 1 the image is not resized, so the mean of 4 views differs from a single view only by ratio 1.5
    assert torch.allclose(probs, pixelwise(image).softmax(1), atol=0.05)


def test_rescale_size_mmcv():
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(256, 300, (2048, 512)) == (512, 600)
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)


def test_loss_average_all_vs_valid(task):
    logits = torch.zeros(1, 6, 1, 4)
    logits[0, 2, 0, 0] = math.log(5.0)  # p(class 2) = 5/10 at pixel 0
    label = torch.tensor([[[2, 0, 255, 255]]])
    l0 = -math.log(5 / 10)
    l1 = -math.log(1 / 6)
    assert task.loss(logits, label).item() == pytest.approx((l0 + l1) / 4)  # mmseg: over all 4 pixels
    task.hparams.loss_average = "valid"
    try:
        assert task.loss(logits, label).item() == pytest.approx((l0 + l1) / 2)
    finally:
        task.hparams.loss_average = "all"


def test_parameter_groups_mmcv_quirk(task):
    lr, wd = 8e-5, 1e-3
    for quirk in (True, False):
        task.mmcv_norm_quirk = quirk
        by_id = {id(p): g for g in task.parameter_groups() for p in g["params"]}
        for name, p in task.named_parameters():
            if not p.requires_grad:
                assert id(p) not in by_id
                continue
            g = by_id[id(p)]
            in_unet, is_norm = name.startswith("backbone.unet."), "norm" in name
            expected_lr = lr * (0.1 if in_unet and not (quirk and is_norm) else 1.0)
            assert g["lr"] == pytest.approx(expected_lr), name
            assert g["weight_decay"] == (0.0 if is_norm else wd), name
    task.mmcv_norm_quirk = True
    # biases and BN weights of the head are decayed, as in mmcv without bias_decay_mult
    by_id = {id(p): g for g in task.parameter_groups() for p in g["params"]}
    assert by_id[id(task.head.conv_seg.bias)]["weight_decay"] == wd


def test_poly_schedule_with_warmup():
    assert poly_factor(0, 80000, 1.0, 1500, 1e-6) == pytest.approx(1e-6)
    assert poly_factor(750, 80000, 1.0, 1500, 1e-6) == pytest.approx((1 - 750 / 80000) * (1 - 0.5 * (1 - 1e-6)))
    assert poly_factor(1500, 80000, 1.0, 1500, 1e-6) == pytest.approx(1 - 1500 / 80000)
    assert poly_factor(40000, 80000, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(80000, 80000, 1.0) == 0.0
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [param], "lr": 8e-6}], lr=8e-5)
    sched = poly_schedule(opt, total_steps=100, power=1.0, warmup_steps=10)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[10] == pytest.approx(8e-6 * 0.9)  # each group scaled from its own lr
