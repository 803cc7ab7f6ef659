"""diffusers -> original (ldm / CompVis) key layout, to build original-layout checkpoints from tiny models in tests.

The inverse of diffusers' ``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint`` (vpd-reference §2.6,
§6) for the SD-1.x, SD 2.x and SDXL topologies, plus the CLIP text encoder's
``cond_stage_model.transformer.text_model.`` prefix and OpenCLIP's layout (SD 2.x: ``cond_stage_model.model.``,
SDXL: ``conditioner.embedders.1.model.``; fused q/k/v ``in_proj``, ``resblocks``, transposed
``text_projection``), the inverse of ``convert_open_clip_checkpoint``.
"""

from __future__ import annotations

import re

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_FIXED = {
    "conv_in.": "input_blocks.0.0.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",  # SDXL's added (pooled text + time ids) embedding
    "add_embedding.linear_2.": "label_emb.0.2.",
}


def _resnet(rest: str) -> str:
    head, tail = rest.split(".", 1)
    return f"{_RESNET[head]}.{tail}"


def unet_to_ldm(state_dict: dict, config) -> dict:
    """diffusers ``UNet2DConditionModel`` keys -> ldm ``openaimodel.UNetModel`` keys."""
    n = config["layers_per_block"] + 1
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state_dict.items():
        new = next((b + key[len(a) :] for a, b in _UNET_FIXED.items() if key.startswith(a)), None)
        if new is None and (m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)):
            new = f"input_blocks.{n * int(m[1]) + int(m[2]) + 1}.0.{_resnet(m[3])}"
        elif new is None and (m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key)):
            new = f"input_blocks.{n * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
        elif new is None and (m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)):
            new = f"input_blocks.{n * (int(m[1]) + 1)}.0.op.{m[2]}"
        elif new is None and (m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)):
            new = f"output_blocks.{n * int(m[1]) + int(m[2])}.0.{_resnet(m[3])}"
        elif new is None and (m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key)):
            new = f"output_blocks.{n * int(m[1]) + int(m[2])}.1.{m[3]}"
        elif new is None and (m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)):
            b = int(m[1])
            new = f"output_blocks.{n * b + n - 1}.{2 if up_attn[b] else 1}.conv.{m[2]}"
        elif new is None and (m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key)):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif new is None and (m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key)):
            new = f"middle_block.1.{m[1]}"
        assert new is not None, f"no ldm name for UNet key {key}"
        out[new] = value
    return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state_dict: dict, num_levels: int = 4) -> dict:
    """diffusers ``AutoencoderKL`` keys -> ldm ``AutoencoderKL`` keys (encoder, decoder, quant convs)."""
    out = {}
    for key, value in state_dict.items():
        new = key
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            level = num_levels - 1 - int(m[1])
            new = f"decoder.up.{level}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key):
            new = f"decoder.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
            if m[2] == "weight" and m[1] != "group_norm":
                value = value[:, :, None, None]
        elif key.startswith("decoder.conv_norm_out."):
            new = "decoder.norm_out." + key[len("decoder.conv_norm_out.") :]
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"encoder\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key):
            new = f"encoder.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
            if m[2] == "weight" and m[1] != "group_norm":
                value = value[:, :, None, None]  # ldm: 1x1 convs
        elif key.startswith("encoder.conv_norm_out."):
            new = "encoder.norm_out." + key[len("encoder.conv_norm_out.") :]
        out[new] = value
    return out


def clip_to_ldm(state_dict: dict) -> dict:
    """transformers ``CLIPTextModel`` keys (flattened in v5 or with ``text_model.``) -> SD's cond-stage keys."""
    prefix = "cond_stage_model.transformer.text_model."
    return {prefix + k.removeprefix("text_model."): v for k, v in state_dict.items()}


_OPEN_CLIP_NAMES = (
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
)


def clip_to_open_clip(state_dict: dict, prefix: str) -> dict:
    """transformers ``CLIPTextModel[WithProjection]`` keys -> OpenCLIP's text-tower keys under ``prefix``."""
    import torch

    out, qkv = {}, {}
    for key, value in state_dict.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", key):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key):
            rest = m[2]
            for a, b in _OPEN_CLIP_NAMES:
                rest = rest.replace(a, b)
            out[f"{prefix}transformer.resblocks.{m[1]}.{rest.replace('self_attn.', 'attn.')}"] = value
        else:
            assert key == "embeddings.position_ids", f"no OpenCLIP name for text key {key}"
    for (layer, kind), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]])
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out
