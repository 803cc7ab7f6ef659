"""Tiny, randomly initialised Stable-Diffusion-shaped components, for the demo, tests and benchmarks.

:func:`save_tiny_stable_diffusion` writes a UNet, a VAE, a CLIP text encoder and an offline byte-level CLIP
tokenizer with ``save_pretrained`` into one diffusers-format folder, so the demo and tests load them back
through exactly the ``from_pretrained`` path that real Stable Diffusion v1.5 weights take.

The topology is SD-1.x's (CrossAttnDownBlock2D x3 + DownBlock2D, UpBlock2D + CrossAttnUpBlock2D x3, two
layers per block, an 8x VAE), only narrower. :func:`sd15_unet_config` gives the full-size SD-1.5 UNet
configuration for shape tests and benchmarks with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = [
    "TINY_TEXT_CONFIG",
    "TINY_UNET_CONFIG",
    "TINY_VAE_CONFIG",
    "save_tiny_stable_diffusion",
    "sd15_unet_config",
    "write_byte_level_clip_tokenizer",
]

TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(32, 32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=4,
    norm_num_groups=16,
)

TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 16, 32, 32),
    layers_per_block=1,
    norm_num_groups=16,
)

TINY_TEXT_CONFIG = dict(
    hidden_size=32,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=2,
    max_position_embeddings=77,
    projection_dim=32,
)


def sd15_unet_config() -> dict:
    """The Stable Diffusion v1.5 UNet configuration (859.5 M parameters when built)."""
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def write_byte_level_clip_tokenizer(folder: str | Path) -> Path:
    """Write a 514-token CLIP BPE vocabulary with no merges (every byte its own token), offline.

    Same special tokens and ids layout as CLIP (bytes, bytes + ``</w>``, then ``<|startoftext|>`` and
    ``<|endoftext|>``), so ``CLIPTokenizer.from_pretrained(folder)`` gives a working tokenizer.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def pretrain_tiny_vae(vae, steps: int = 300, size: int = 64, seed: int = 0) -> list[float]:
    """Train ``vae`` briefly as an autoencoder on rendered rooms (the demo's kind of images).

    A frozen VAE encoder with *random* weights scrambles the image: a linear probe of its 4-channel latent
    predicts depth no better than the mean, whereas Stable Diffusion's real VAE is nearly lossless. A few
    hundred reconstruction steps (seconds on a CPU) give the tiny VAE a latent that keeps the image, so the demo
    exercises VPD as it is meant to work: a frozen, information-preserving encoder. Returns the losses.
    """
    import numpy as np

    from vpd_lightning.data.generate import render_room

    rng = np.random.default_rng(seed)
    scenes = ("kitchen", "bedroom", "bathroom", "living_room", "office", "dining_room")
    images = np.stack([render_room(size, size, rng, scenes[i % len(scenes)])[0] for i in range(64)])
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    vae.train()
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (16,), generator=generator)]
        flip = torch.rand(16, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        recon = vae.decode(vae.encode(batch).latent_dist.mode()).sample
        loss = torch.nn.functional.mse_loss(recon, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses


def _write_tokenizer(root: Path, kind: str):
    """Write ``root/tokenizer`` (``kind``: ``"bytes"`` one token per byte, ``"clip"`` OpenAI CLIP's BPE) and
    return the tokenizer."""
    import shutil

    from transformers import CLIPTokenizer

    src = root / "_tokenizer_src"
    if kind == "bytes":
        tokenizer = CLIPTokenizer.from_pretrained(str(write_byte_level_clip_tokenizer(src)), model_max_length=77)
    elif kind == "clip":
        from vpd_lightning.backbone.loading import clip_tokenizer_from_bpe

        tokenizer = clip_tokenizer_from_bpe(cache_dir=src)
    else:
        raise ValueError(f"tokenizer must be 'bytes' or 'clip', got {kind!r}")
    tokenizer.save_pretrained(str(root / "tokenizer"))
    shutil.rmtree(src, ignore_errors=True)
    return tokenizer


def save_tiny_stable_diffusion(
    root: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    vae_pretrain_steps: int | None = 0,
    vae_pretrain_size: int = 64,
    tokenizer: str = "bytes",
) -> Path:
    """Write tiny random ``unet/``, ``vae/``, ``text_encoder/`` and ``tokenizer/`` folders under ``root``.

    ``vae_pretrain_steps > 0`` first trains the VAE as an autoencoder on ``vae_pretrain_size``-pixel rooms
    (:func:`pretrain_tiny_vae`); everything else stays randomly initialised. ``tokenizer``: ``"bytes"`` (514
    ids, every byte a token: a word of n letters is n tokens) or ``"clip"`` (OpenAI CLIP's BPE, SD-1.5's, from
    the file shipped in the package: 49,408 ids, common words one token each; the text encoder's embedding table
    grows to match). Idempotent: an existing folder made with the same arguments is kept unless ``overwrite``;
    ``vae_pretrain_steps=None`` accepts any existing folder (and makes a random one if none).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(root)
    marker = root / "vpd_tiny.json"
    made_with = {
        "seed": seed,
        "vae_pretrain_steps": vae_pretrain_steps or 0,
        "vae_pretrain_size": vae_pretrain_size if vae_pretrain_steps else None,
        "tokenizer": tokenizer,
    }
    if marker.exists() and not overwrite:
        made = json.loads(marker.read_text())
        made.setdefault("tokenizer", "bytes")  # folders written before these options existed
        made.setdefault("vae_pretrain_size", 64 if made.get("vae_pretrain_steps") else None)
        if vae_pretrain_steps is None or all(made.get(k) == v for k, v in made_with.items()):
            return root
    vae_pretrain_steps = vae_pretrain_steps or 0
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # a folder is complete only once the marker is written again
    tokenizer_obj = _write_tokenizer(root, tokenizer)

    torch.manual_seed(seed)
    UNet2DConditionModel(**TINY_UNET_CONFIG).save_pretrained(str(root / "unet"))
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    if vae_pretrain_steps > 0:
        pretrain_tiny_vae(vae, vae_pretrain_steps, size=vae_pretrain_size, seed=seed)
    vae.save_pretrained(str(root / "vae"))
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer_obj),
        bos_token_id=tokenizer_obj.bos_token_id,
        eos_token_id=tokenizer_obj.eos_token_id,
        pad_token_id=tokenizer_obj.pad_token_id,
        **TINY_TEXT_CONFIG,
    )
    CLIPTextModel(text_config).save_pretrained(str(root / "text_encoder"))
    marker.write_text(json.dumps({**made_with, "kind": "tiny SD-1.x-shaped components"}))
    return root
