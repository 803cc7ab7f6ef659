"""Tests for loading Stable Diffusion components (vpd_lightning.backbone.loading)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import vpd_lightning.backbone.loading as loading
from vpd_lightning.backbone import (
    DEFAULT_SD_PATH,
    DiffusionBackbone,
    WeightsNotFoundError,
    load_text_encoder,
    load_tokenizer,
    load_unet,
    load_vae,
)
from vpd_lightning.backbone.tiny import TINY_TEXT_CONFIG, TINY_UNET_CONFIG, save_tiny_stable_diffusion

FAKE_HUB_ID = "someone/not-a-real-model"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd") / "sd")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_default_path():
    assert DEFAULT_SD_PATH == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert issubclass(WeightsNotFoundError, FileNotFoundError)


def test_load_components_from_tiny_folder(tiny_dir):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = load_unet(tiny_dir)
    assert isinstance(unet, UNet2DConditionModel)
    assert unet.config.cross_attention_dim == TINY_UNET_CONFIG["cross_attention_dim"]
    assert tuple(unet.config.block_out_channels) == TINY_UNET_CONFIG["block_out_channels"]
    vae = load_vae(str(tiny_dir))
    assert isinstance(vae, AutoencoderKL) and vae.config.latent_channels == 4
    encoder = load_text_encoder(tiny_dir)
    assert isinstance(encoder, CLIPTextModel)
    assert encoder.config.hidden_size == TINY_TEXT_CONFIG["hidden_size"]
    tokenizer = load_tokenizer(tiny_dir, vocab_size=encoder.config.vocab_size)
    assert len(tokenizer) == encoder.config.vocab_size == 514
    assert tokenizer.model_max_length == 77
    ids = tokenizer(["a kitchen"], padding="max_length", max_length=20, return_tensors="pt").input_ids
    assert ids.shape == (1, 20)
    assert ids[0, 0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids[0].tolist()
    out = encoder(input_ids=ids).pooler_output
    assert out.shape == (1, TINY_TEXT_CONFIG["hidden_size"])


def test_load_with_dtype(tiny_dir):
    unet = load_unet(tiny_dir, torch_dtype=torch.float16)
    assert next(unet.parameters()).dtype == torch.float16


def test_backbone_from_pretrained(tiny_dir):
    backbone = DiffusionBackbone.from_pretrained(tiny_dir, attention="none")
    assert isinstance(backbone, DiffusionBackbone)
    assert backbone.unet.config.cross_attention_dim == TINY_UNET_CONFIG["cross_attention_dim"]
    assert getattr(backbone.vae, "decoder", None) is None  # only the encoder is kept
    assert backbone.attention == "none" and backbone.timestep == 1


def test_missing_local_folder(tmp_path):
    missing = tmp_path / "no_sd_here"
    for loader, sub in ((load_unet, "unet"), (load_vae, "vae"), (load_text_encoder, "text_encoder")):
        with pytest.raises(WeightsNotFoundError) as err:
            loader(missing)
        msg = str(err.value)
        assert str(missing / sub) in msg and "config.json" in msg
        assert "sd_path" in msg
    with pytest.raises(WeightsNotFoundError) as err:
        load_tokenizer(missing)
    assert str(missing / "tokenizer") in str(err.value) and "tokenizer files" in str(err.value)
    with pytest.raises(WeightsNotFoundError) as err:
        DiffusionBackbone.from_pretrained(missing)
    assert str(missing / "unet") in str(err.value) and "sd_path" in str(err.value)


def test_missing_subfolder(tiny_dir):
    with pytest.raises(WeightsNotFoundError) as err:
        load_unet(tiny_dir, subfolder="unet_ema")
    assert str(tiny_dir / "unet_ema") in str(err.value)


def test_broken_component_folder(tmp_path):
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    (tmp_path / "sd" / "unet" / "config.json").write_text("{ this is not json")
    with pytest.raises(WeightsNotFoundError) as err:
        load_unet(tmp_path / "sd")
    assert "could not load" in str(err.value) and str(tmp_path / "sd" / "unet") in str(err.value)


def test_hub_id_offline_fails_fast(offline):
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        load_unet(FAKE_HUB_ID)
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert FAKE_HUB_ID in msg and "HF_HUB_OFFLINE" in msg and "not in the local Hugging Face cache" in msg
    start = time.monotonic()
    for loader in (load_vae, load_text_encoder, load_tokenizer):
        with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
            loader(FAKE_HUB_ID)
    assert time.monotonic() - start < 10


def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=2.0: False)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="cannot be reached") as err:
        load_unet(FAKE_HUB_ID)
    assert FAKE_HUB_ID in str(err.value)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("name", ["v1-5-pruned-emaonly.ckpt", "sd.safetensors", "model.pth", "model.bin"])
def test_single_file_checkpoint(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="single-file") as err:
        load_unet(path)
    assert str(path) in str(err.value)
    with pytest.raises(WeightsNotFoundError, match="single-file"):
        load_unet(name)  # also when it does not exist


def test_looks_local():
    assert loading._looks_local("/abs/path")
    assert loading._looks_local("./rel")
    assert loading._looks_local("~/sd")
    assert loading._looks_local("a/b/c")
    assert loading._looks_local("just_a_name")
    assert not loading._looks_local(FAKE_HUB_ID)
    assert not loading._looks_local(DEFAULT_SD_PATH)


def test_tokenizer_vocab_size_mismatch(tiny_dir):
    with pytest.raises(WeightsNotFoundError) as err:
        load_tokenizer(tiny_dir, vocab_size=1000)
    msg = str(err.value)
    assert "514 tokens" in msg and "1000 tokens" in msg and str(tiny_dir) in msg


def test_tokenizer_broken_vocab(tmp_path):
    folder = tmp_path / "sd" / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({"a</w>": 0, "b</w>": 1}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(WeightsNotFoundError) as err:
        load_tokenizer(tmp_path / "sd")
    msg = str(err.value)
    assert "at least 258 tokens" in msg and str(tmp_path / "sd") in msg


def test_tokenizer_empty_folder(tmp_path):
    (tmp_path / "sd" / "tokenizer").mkdir(parents=True)
    with pytest.raises(WeightsNotFoundError, match="tokenizer"):
        load_tokenizer(tmp_path / "sd")
