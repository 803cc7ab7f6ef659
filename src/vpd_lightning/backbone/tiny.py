"""Tiny, randomly initialised Stable-Diffusion-shaped components, for the demo, tests and benchmarks.

:func:`save_tiny_stable_diffusion` writes a UNet, a VAE, a CLIP text encoder and an offline byte-level CLIP
tokenizer with ``save_pretrained`` into one diffusers-format folder, so the demo and tests load them back
through exactly the ``from_pretrained`` path that real Stable Diffusion v1.5 weights take.

The topology is SD-1.x's (CrossAttnDownBlock2D x3 + DownBlock2D, UpBlock2D + CrossAttnUpBlock2D x3, two
layers per block, an 8x VAE), only narrower; ``family="sd21"`` (or ``sd21_base``) gives SD 2.x's (linear
projections, heads per level, a GELU text encoder, a tokenizer padding with ``!``) and ``family="sdxl"`` SDXL's
(three levels, cross-attention in the lower two, 1-1-2 transformer layers, ``text_time`` added conditioning,
``text_encoder_2``/``tokenizer_2``), each with its own context width (sd15 32, sd2 48, sdxl 32 + 48 = 80) so a
component of one family never fits another. Every folder gets the family's ``model_index.json``.
:func:`sd15_unet_config` gives the full-size SD-1.5 UNet configuration for shape tests and benchmarks with random
weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = [
    "TINY_FAMILY_CONFIGS",
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


#: Per family: the tiny UNet configuration and the text encoder(s) (subfolder -> (config, tokenizer pad token)).
TINY_FAMILY_CONFIGS: dict[str, dict] = {
    "sd15": {"unet": TINY_UNET_CONFIG, "text": {"text_encoder": (TINY_TEXT_CONFIG, "<|endoftext|>")}},
    "sd2": {
        "unet": dict(
            TINY_UNET_CONFIG, cross_attention_dim=48, attention_head_dim=(2, 4, 8, 8), use_linear_projection=True
        ),
        "text": {"text_encoder": (dict(TINY_TEXT_CONFIG, hidden_size=48, projection_dim=24, hidden_act="gelu"), "!")},
    },
    "sdxl": {
        "unet": dict(
            TINY_UNET_CONFIG,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1, 2),
            attention_head_dim=(2, 4, 4),
            cross_attention_dim=80,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled (text_encoder_2 projection) + 6 time ids
        ),
        "text": {
            "text_encoder": (TINY_TEXT_CONFIG, "<|endoftext|>"),
            # wider than text_encoder, as bigG (1280) is wider than ViT-L (768): single files tell them apart so
            "text_encoder_2": (dict(TINY_TEXT_CONFIG, hidden_size=48, hidden_act="gelu"), "!"),
        },
    },
}


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

    from vpd_lightning.data.synthetic.nyuv2 import render_room

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


def _write_tokenizer(root: Path, kind: str, subfolder: str = "tokenizer", pad_token: str = "<|endoftext|>"):
    """Write ``root/<subfolder>`` (``kind``: ``"bytes"`` one token per byte, ``"clip"`` OpenAI CLIP's BPE), padding
    with ``pad_token``, and return the tokenizer."""
    import shutil

    from transformers import CLIPTokenizer

    src = root / "_tokenizer_src"
    if kind == "bytes":
        tokenizer = CLIPTokenizer.from_pretrained(
            str(write_byte_level_clip_tokenizer(src)), model_max_length=77, pad_token=pad_token
        )
    elif kind == "clip":
        from vpd_lightning.backbone.loading import clip_tokenizer_from_bpe

        tokenizer = clip_tokenizer_from_bpe(cache_dir=src, pad_token=pad_token)
    else:
        raise ValueError(f"tokenizer must be 'bytes' or 'clip', got {kind!r}")
    tokenizer.save_pretrained(str(root / subfolder))
    shutil.rmtree(src, ignore_errors=True)
    return tokenizer


def save_tiny_stable_diffusion(
    root: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    vae_pretrain_steps: int | None = 0,
    vae_pretrain_size: int = 64,
    tokenizer: str = "bytes",
    family: str = "sd15",
) -> Path:
    """Write tiny random ``unet/``, ``vae/``, ``text_encoder/`` and ``tokenizer/`` folders (SDXL: also
    ``text_encoder_2/`` and ``tokenizer_2/``) and the family's ``model_index.json`` under ``root``.

    ``vae_pretrain_steps > 0`` first trains the VAE as an autoencoder on ``vae_pretrain_size``-pixel rooms
    (:func:`pretrain_tiny_vae`); everything else stays randomly initialised. ``tokenizer``: ``"bytes"`` (514
    ids, every byte a token: a word of n letters is n tokens) or ``"clip"`` (OpenAI CLIP's BPE, SD-1.5's, from
    the file shipped in the package: 49,408 ids, common words one token each; the text encoder's embedding table
    grows to match). ``family``: the topology (``sd15``, ``sd21``, ``sd21_base``, ``sdxl``; see the module
    docstring). Idempotent: an existing folder made with the same arguments is kept unless ``overwrite``;
    ``vae_pretrain_steps=None`` accepts any existing folder of that family (and makes a random one if none).
    """
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from vpd_lightning.backbone.families import get_family

    family_info = get_family(family)
    tiny = TINY_FAMILY_CONFIGS[family_info.topology if family_info.topology != "sd1" else "sd15"]

    root = Path(root)
    marker = root / "vpd_tiny.json"
    made_with = {
        "seed": seed,
        "vae_pretrain_steps": vae_pretrain_steps or 0,
        "vae_pretrain_size": vae_pretrain_size if vae_pretrain_steps else None,
        "tokenizer": tokenizer,
        "family": family,
    }
    if marker.exists() and not overwrite:
        made = json.loads(marker.read_text())
        made.setdefault("tokenizer", "bytes")  # folders written before these options existed
        made.setdefault("vae_pretrain_size", 64 if made.get("vae_pretrain_steps") else None)
        made.setdefault("family", "sd15")
        if all(made.get(k) == v for k, v in made_with.items() if vae_pretrain_steps is not None or k == "family"):
            return root
    vae_pretrain_steps = vae_pretrain_steps or 0
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # a folder is complete only once the marker is written again
    for stale in ("text_encoder_2", "tokenizer_2"):  # a folder of another family rewritten
        shutil.rmtree(root / stale, ignore_errors=True)
    tokenizers = {
        name: _write_tokenizer(root, tokenizer, name.replace("text_encoder", "tokenizer"), pad)
        for name, (_, pad) in tiny["text"].items()
    }
    shutil.copyfile(family_info.config_dir / "model_index.json", root / "model_index.json")

    torch.manual_seed(seed)
    UNet2DConditionModel(**tiny["unet"]).save_pretrained(str(root / "unet"))
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    if vae_pretrain_steps > 0:
        pretrain_tiny_vae(vae, vae_pretrain_steps, size=vae_pretrain_size, seed=seed)
    vae.save_pretrained(str(root / "vae"))
    for name, (config, _) in tiny["text"].items():
        tokenizer_obj = tokenizers[name]
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer_obj),
            bos_token_id=tokenizer_obj.bos_token_id,
            eos_token_id=tokenizer_obj.eos_token_id,
            pad_token_id=tokenizer_obj.pad_token_id,
            **config,
        )
        model_class = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
        model_class(text_config).save_pretrained(str(root / name))
    marker.write_text(json.dumps({**made_with, "kind": f"tiny {family_info.topology}-shaped components"}))
    return root
