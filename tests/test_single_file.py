"""Original-layout single-file Stable Diffusion checkpoints (``.safetensors`` / ``.ckpt``), offline."""

from __future__ import annotations

import json

import pytest
import torch
from ldm_layout import clip_to_ldm, unet_to_ldm, vae_to_ldm
from safetensors.torch import save_file

from vpd_lightning.backbone import (
    DiffusionBackbone,
    WeightsNotFoundError,
    load_text_encoder,
    load_tokenizer,
    load_unet,
    load_vae,
)
from vpd_lightning.backbone.loading import SD15_CONFIG_DIR


@pytest.fixture(scope="module")
def components(tiny_sd_dir):
    return load_unet(tiny_sd_dir), load_vae(tiny_sd_dir), load_text_encoder(tiny_sd_dir)


@pytest.fixture(scope="module")
def single_files(components, tmp_path_factory):
    """The tiny SD components as one original-layout checkpoint, in both file formats."""
    unet, vae, text = components
    state = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
    state.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict()).items()})
    state.update(clip_to_ldm(text.state_dict()))
    state = {k: v.contiguous().clone() for k, v in state.items()}
    folder = tmp_path_factory.mktemp("single")
    save_file(state, folder / "tiny-sd.safetensors")
    torch.save({"state_dict": state, "global_step": 0}, folder / "tiny-sd.ckpt")
    return folder / "tiny-sd.safetensors", folder / "tiny-sd.ckpt"


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("index", [0, 1], ids=["safetensors", "ckpt"])
def test_components_load_from_a_single_file(components, single_files, tiny_sd_dir, index):
    path = single_files[index]
    unet, vae, text = components
    _assert_same(load_unet(path, single_file_config=tiny_sd_dir), unet)
    _assert_same(load_vae(path, single_file_config=tiny_sd_dir), vae)
    _assert_same(load_text_encoder(path, single_file_config=tiny_sd_dir), text)


def test_backbone_from_single_file_equals_folder(single_files, tiny_sd_dir):
    from_file = DiffusionBackbone.from_pretrained(single_files[0], single_file_config=tiny_sd_dir, attention="a32")
    from_folder = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32")
    image, context = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 3, 32)
    with torch.no_grad():
        for a, b in zip(from_file(image, context), from_folder(image, context)):
            assert torch.allclose(a, b, atol=1e-5)  # same weights; kernels may differ in the last bits


def test_single_file_errors(single_files, tmp_path, tiny_sd_dir):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_unet(tmp_path / "missing.ckpt")
    with pytest.raises(WeightsNotFoundError, match="unet/config.json"):
        load_unet(single_files[0], single_file_config=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="could not load"):  # tiny weights into SD-1.5's shapes
        load_unet(single_files[0])


def test_shipped_sd15_configs():
    unet = json.loads((SD15_CONFIG_DIR / "unet" / "config.json").read_text())
    vae = json.loads((SD15_CONFIG_DIR / "vae" / "config.json").read_text())
    text = json.loads((SD15_CONFIG_DIR / "text_encoder" / "config.json").read_text())
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["cross_attention_dim"] == 768
    assert unet["attention_head_dim"] == 8 and unet["layers_per_block"] == 2 and unet["flip_sin_to_cos"] is True
    assert vae["block_out_channels"] == [128, 256, 512, 512] and vae["scaling_factor"] == 0.18215
    assert text["hidden_size"] == 768 and text["num_hidden_layers"] == 12 and text["hidden_act"] == "quick_gelu"
    assert text["vocab_size"] == 49408 and text["eos_token_id"] == 2  # the openai config (legacy pooling)


def test_tokenizer_for_a_single_file(single_files, tiny_sd_dir, tmp_path, monkeypatch):
    """A single file holds no tokenizer: the config folder's is used, else OpenAI CLIP's, built from the shipped BPE."""
    assert len(load_tokenizer(single_files[0], single_file_config=tiny_sd_dir)) == 514
    monkeypatch.setenv("VPD_CACHE", str(tmp_path))
    clip = load_tokenizer(single_files[1], vocab_size=49408)
    assert len(clip) == 49408
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (tmp_path / "clip-tokenizer" / "vocab.json").is_file()  # derived once, then reused
