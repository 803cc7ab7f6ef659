"""DiffusionBackbone: taps, attention maps, processors, VAE encoding, options, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

from vpd_lightning.backbone import DiffusionBackbone, TextAdapter, load_unet, load_vae
from vpd_lightning.backbone.attention import CaptureAttnProcessor, attention_level
from vpd_lightning.backbone.tiny import sd15_unet_config


@pytest.fixture(scope="module")
def parts(tiny_sd_dir):
    torch.manual_seed(0)
    return load_unet(tiny_sd_dir), load_vae(tiny_sd_dir)


def make(parts, **options) -> DiffusionBackbone:
    unet, vae = parts
    return DiffusionBackbone(copy.deepcopy(unet), copy.deepcopy(vae), **options)


def reference_taps(unet, latents, context, timestep=1):
    """VPD's taps from the *stock* diffusers forward, with plain forward hooks (an independent path)."""
    taps = {}
    modules = {
        3: unet.up_blocks[0].resnets[1],
        2: unet.up_blocks[1].attentions[1],
        1: unet.up_blocks[2].attentions[1],
        0: unet.up_blocks[3],
    }
    handles = [
        m.register_forward_hook(
            lambda mod, a, out, lvl=lvl: taps.__setitem__(lvl, out[0] if isinstance(out, tuple) else out)
        )
        for lvl, m in modules.items()
    ]
    with torch.no_grad():
        unet(latents, timestep, encoder_hidden_states=context)
    for h in handles:
        h.remove()
    return [taps[i] for i in range(4)]


@pytest.mark.parametrize(("size", "attention"), [((64, 64), "a32"), ((48, 80), "a64"), ((40, 72), "none")])
def test_pyramid_shapes_and_channels(parts, size, attention):
    backbone = make(parts, attention=attention)
    image = torch.rand(2, 3, *size) * 2 - 1
    context = torch.randn(2, 5, 32)
    with torch.no_grad():
        feats = backbone(image, context)
    assert len(feats) == 4
    h, w = size[0] // 8, size[1] // 8
    sides = [(h, w)]
    for _ in range(3):  # stride-2 convs with padding 1: ceil division
        sides.append(((sides[-1][0] + 1) // 2, (sides[-1][1] + 1) // 2))
    assert [tuple(f.shape[-2:]) for f in feats] == sides
    assert [f.shape[1] for f in feats] == backbone.out_channels(5)
    extra = {"a32": [0, 5, 5, 0], "a64": [5, 5, 5, 0], "none": [0, 0, 0, 0]}[attention]
    assert backbone.out_channels(5) == [c + e for c, e in zip([32, 32, 64, 64], extra)]


def test_features_equal_stock_unet_taps(parts):
    """Our truncated forward (no output head) gives exactly the stock forward's tapped features at t=1."""
    backbone = make(parts, attention="a32")
    stock = copy.deepcopy(parts[0])
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    context = torch.randn(1, 3, 32)
    with torch.no_grad():
        ours = backbone(image, context)
        latents = parts[1].encode(image).latent_dist.mode()
    ref = reference_taps(stock, latents, context, timestep=1)
    for level, (o, r) in enumerate(zip(ours, ref)):
        assert torch.allclose(o[:, : r.shape[1]], r, atol=1e-5), f"level {level}"
    other_t = reference_taps(stock, latents, context, timestep=500)
    assert not torch.allclose(ours[0][:, :32], other_t[0], atol=1e-3)  # the timestep matters


def test_output_head_is_never_run(parts):
    backbone = make(parts)
    calls = []
    backbone.unet.conv_out.register_forward_hook(lambda *a: calls.append(1))
    backbone(torch.zeros(1, 3, 64, 64), torch.zeros(1, 2, 32))
    assert calls == []
    assert not any(p.requires_grad for p in backbone.unet.conv_out.parameters())


def test_processors_leave_unet_output_unchanged_and_are_removable(parts):
    unet = copy.deepcopy(parts[0])
    stock = copy.deepcopy(parts[0])
    before = dict(unet.attn_processors)
    backbone = DiffusionBackbone(unet, copy.deepcopy(parts[1]), attention="a64")
    latents, context = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 32)
    with torch.no_grad():
        expected = stock(latents, 1, encoder_hidden_states=context).sample
        with_capture = unet(latents, 1, encoder_hidden_states=context).sample
    assert (with_capture - expected).abs().max() <= 1e-5
    captured = [k for k, p in unet.attn_processors.items() if isinstance(p, CaptureAttnProcessor)]
    # a64 captures the cross-attention of down 0-2 and up 1-3, never self-attention or the mid block
    assert captured and all(k.endswith("attn2.processor") and "mid_block" not in k for k in captured)
    assert len(captured) == 2 * 3 + 3 * 3
    backbone.remove()
    assert all(unet.attn_processors[k] is before[k] for k in before)
    with torch.no_grad():
        restored = unet(latents, 1, encoder_hidden_states=context).sample
    assert torch.equal(restored, expected)


def test_map_counts_and_probabilities(parts):
    backbone = make(parts, attention="a32")
    image, context = torch.rand(1, 3, 64, 96) * 2 - 1, torch.randn(1, 7, 32)
    latents = backbone.encode(image)
    backbone.store.reset()
    with torch.no_grad():
        backbone._unet_features(latents, context)
    # SD topology: down_blocks.{1,2} x 2 layers + up_blocks.{1,2} x 3 layers = 5 maps per level
    assert {lvl: len(m) for lvl, m in backbone.store.maps.items()} == {1: 5, 2: 5}
    assert backbone.store.maps[1][0].shape == (1, 4 * 6, 7)  # [B, HW, N] at latent stride 2
    with torch.no_grad():
        feats = backbone(image, context)
    for level in (1, 2):
        maps = feats[level][:, -7:]
        # head- and layer-averaged softmax over the tokens: sums to one at every position
        assert torch.allclose(maps.sum(1), torch.ones_like(maps[:, 0]), atol=1e-5)
        assert (maps >= 0).all()


def test_explicit_attention_matches_fast_path(parts):
    fast = make(parts, attention="a32")
    explicit = make(parts, attention="a32", attention_impl="explicit")
    assert sum(isinstance(p, CaptureAttnProcessor) for p in explicit.unet.attn_processors.values()) == len(
        explicit.unet.attn_processors
    )
    image, context = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 4, 32)
    with torch.no_grad():
        for a, b in zip(fast(image, context), explicit(image, context)):
            assert (a - b).abs().max() <= 1e-5


def test_map_row_major_layout(parts):
    """Maps are [B, N, h, w] with the row-major order of the flattened positions."""
    backbone = make(parts, attention="a32")
    store = backbone.store
    store.reset()
    probs = torch.arange(6 * 3, dtype=torch.float32).reshape(1, 6, 3)  # B=1, HW=2x3, N=3
    store.add(1, probs)
    out = store.aggregate({1: (2, 3)})[1]
    assert out.shape == (1, 3, 2, 3)
    assert out[0, 2, 1, 0] == probs[0, 3, 2]  # position (row 1, col 0) = flat index 3


def test_attention_gradient_detached_by_default(parts):
    for detach in (True, False):
        backbone = make(parts, attention="a32", detach_attention=detach)
        context = torch.randn(1, 3, 32, requires_grad=True)
        feats = backbone(torch.rand(1, 3, 64, 64) * 2 - 1, context)
        feats[1][:, -3:].pow(2).sum().backward()  # a loss on the attention-map channels only
        grad = 0.0 if context.grad is None else float(context.grad.abs().sum())
        assert (grad == 0.0) is detach


def test_vae_encoder_only_posterior_mean_unscaled(parts):
    unet, vae = parts
    backbone = make(parts)
    assert not hasattr(backbone.vae, "decoder") or backbone.vae.decoder is None
    assert not any(p.requires_grad for p in backbone.vae.parameters())
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = vae.encode(image).latent_dist.mode()
    assert torch.allclose(backbone.encode(image), expected)
    scaled = make(parts, scale_latents=True)
    assert torch.allclose(scaled.encode(image), expected * vae.config.scaling_factor)
    backbone.train()
    assert backbone.unet.training and not backbone.vae.training


def test_bad_input(parts):
    backbone = make(parts)
    with pytest.raises(ValueError, match="multiples of 8"):
        backbone(torch.zeros(1, 3, 60, 64), torch.zeros(1, 2, 32))
    with pytest.raises(ValueError, match="context must be"):
        backbone(torch.zeros(1, 3, 64, 64), torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="attention must be one of"):
        make(parts, attention="a128")
    assert attention_level("up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor", 4) == 2
    assert attention_level("mid_block.attentions.0.transformer_blocks.0.attn2.processor", 4) is None


def test_text_adapter_formula():
    torch.manual_seed(0)
    adapter = TextAdapter(8)
    assert torch.equal(adapter.gamma, torch.full((8,), 1e-4))
    e = torch.randn(3, 8)
    mlp = adapter.fc[2](torch.nn.functional.gelu(adapter.fc[0](e)))
    assert torch.allclose(adapter(e), e + 1e-4 * mlp)
    assert [n for n, _ in adapter.named_parameters()] == [
        "gamma",
        "fc.0.weight",
        "fc.0.bias",
        "fc.2.weight",
        "fc.2.bias",
    ]


def test_sd15_channel_bookkeeping_without_weights():
    """Channels come from the UNet config: SD-1.5 with 150 tokens (ADE20K) and A32 gives VPD's FPN list."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone.tiny import TINY_VAE_CONFIG

    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
    backbone = DiffusionBackbone(unet, AutoencoderKL(**TINY_VAE_CONFIG))
    assert backbone.out_channels(150) == [320, 790, 1430, 1280]
    assert backbone.out_channels(40) == [320, 680, 1320, 1280]
    assert DiffusionBackbone(unet, AutoencoderKL(**TINY_VAE_CONFIG), attention="a64").out_channels(77)[0] == 397
    assert backbone.context_dim == 768


@pytest.fixture(scope="module")
def sd15_backbone():
    """The SD-1.5 UNet built from its config with random weights (859.5 M parameters), tiny VAE."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone.tiny import TINY_VAE_CONFIG

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**sd15_unet_config())
    return DiffusionBackbone(unet, AutoencoderKL(**TINY_VAE_CONFIG), attention="a32")


@pytest.mark.parametrize("size", [(512, 512), pytest.param((480, 640), marks=pytest.mark.slow)])
def test_sd15_pyramid_full_size(sd15_backbone, size):
    assert sum(p.numel() for p in sd15_backbone.unet.parameters()) == 859_520_964
    with torch.no_grad():
        feats = sd15_backbone(torch.rand(1, 3, *size) * 2 - 1, torch.randn(1, 150, 768))
    h, w = size[0] // 8, size[1] // 8
    expected = [
        (320, h, w),
        (790, -(-h // 2), -(-w // 2)),
        (1430, -(-h // 4), -(-w // 4)),
        (1280, -(-h // 8), -(-w // 8)),
    ]
    assert [tuple(f.shape[1:]) for f in feats] == expected


def test_options_noise_posterior_frozen_unet_checkpointing(parts):
    image, context = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 3, 32)
    base = make(parts)
    with torch.no_grad():
        reference = base(image, context)[0]
        torch.manual_seed(0)
        noisy_a = make(parts, add_noise=True, timestep=500)(image, context)[0]
        torch.manual_seed(0)
        noisy_b = make(parts, add_noise=True, timestep=500)(image, context)[0]
        torch.manual_seed(0)
        sampled = make(parts, sample_posterior=True).encode(image)
    assert torch.equal(noisy_a, noisy_b) and not torch.allclose(noisy_a, make(parts, timestep=500)(image, context)[0])
    assert not torch.allclose(sampled, base.encode(image))
    frozen = make(parts, train_unet=False)
    assert not any(p.requires_grad for p in frozen.unet.parameters())
    checkpointed = make(parts, gradient_checkpointing=True).train()
    out = checkpointed(image, context)
    assert torch.allclose(out[0], reference, atol=1e-5)
    out[0].sum().backward()
    assert checkpointed.unet.conv_in.weight.grad is not None


def test_tiny_vae_pretraining_reduces_reconstruction_loss():
    from diffusers import AutoencoderKL

    from vpd_lightning.backbone.tiny import TINY_VAE_CONFIG, pretrain_tiny_vae

    torch.manual_seed(0)
    losses = pretrain_tiny_vae(AutoencoderKL(**TINY_VAE_CONFIG), steps=30, size=32)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
