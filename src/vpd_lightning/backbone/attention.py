"""Cross-attention capture for the diffusion backbone, through diffusers attention processors.

VPD (after Prompt-to-Prompt) replaced the forward of every ldm ``CrossAttention`` module by one that
computes ``softmax(Q K^T * d^-0.5)`` explicitly, averaged the probabilities over heads and kept the
cross-attention maps of the down and up blocks at latent sides 16 and 32 (vpd-reference §2.7).

Here nothing is monkeypatched. :func:`install_attention_capture` replaces the processors of only the
cross-attention layers (``attn2``) whose maps are used by a :class:`CaptureAttnProcessor`, which computes
explicit probabilities for that layer alone and hands their head mean to a :class:`CrossAttentionStore`.
Every other attention layer (all self-attention, and cross-attention whose map is not used) keeps
diffusers' default fused processor (``scaled_dot_product_attention``). :func:`remove_attention_capture`
puts back the exact processor objects that were there before.

:class:`CaptureAttnProcessor` with ``explicit_all=True`` reproduces the original code's cost model
(explicit softmax in every layer); ``scripts/bench.py`` uses it as the baseline.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch
from torch import nn

__all__ = [
    "CaptureAttnProcessor",
    "CrossAttentionStore",
    "attention_level",
    "install_attention_capture",
    "remove_attention_capture",
]

_BLOCK_RE = re.compile(r"^(down_blocks|up_blocks|mid_block)(?:\.(\d+))?\.")


def attention_level(name: str, num_levels: int) -> int | None:
    """Resolution level of an attention processor, from its module name.

    Level ``k`` is latent stride ``2**k``: ``down_blocks.k`` sits at level ``k`` and ``up_blocks.k`` at
    level ``num_levels - 1 - k`` (the up path mirrors the down path). The mid block returns ``None``: VPD's
    ``up_cross+down_cross`` selector never uses it. Keying by level instead of by ``sqrt(HW)`` (as the
    original did, issue #26) makes the capture work for any input size, square or not.
    """
    match = _BLOCK_RE.match(name)
    if match is None:
        raise ValueError(f"cannot tell the UNet block of attention processor '{name}'")
    kind, index = match.group(1), match.group(2)
    if kind == "mid_block":
        return None
    index = int(index)
    return index if kind == "down_blocks" else num_levels - 1 - index


class CrossAttentionStore:
    """Collects head-averaged cross-attention probabilities per resolution level.

    ``add`` receives ``[B, HW, N]`` maps; ``aggregate`` reshapes them to ``[B, N, h, w]`` (row-major, as
    ldm and diffusers flatten ``b c h w -> b (h w) c``) and takes the equal-weight mean of all maps of a level
    (down and up layers alike), as VPD does.
    """

    def __init__(self) -> None:
        self.maps: dict[int, list[torch.Tensor]] = defaultdict(list)
        self.self_maps: list[torch.Tensor] = []
        self.recording = True

    def reset(self) -> None:
        self.maps = defaultdict(list)
        self.self_maps = []
        self.recording = True

    @torch.compiler.disable
    def add(self, level: int, probs: torch.Tensor, cross: bool = True) -> None:
        """Record one head-averaged map; self-attention maps are only held (baseline memory model).

        Never compiled (regional compilation): the store's lists change every forward and must not become guards.
        """
        if self.recording:
            if cross:
                self.maps[level].append(probs)
            else:
                self.self_maps.append(probs)

    def __len__(self) -> int:
        return sum(len(v) for v in self.maps.values())

    def aggregate(self, sizes: dict[int, tuple[int, int]]) -> dict[int, torch.Tensor]:
        """Mean map of each recorded level, as ``[B, N, h, w]``; ``sizes`` gives ``(h, w)`` per level."""
        out = {}
        for level, maps in self.maps.items():
            h, w = sizes[level]
            stacked = torch.stack(maps, dim=0).mean(dim=0)  # [B, HW, N]
            if stacked.shape[1] != h * w:
                raise RuntimeError(
                    f"attention maps of level {level} have {stacked.shape[1]} positions, expected {h}x{w}"
                )
            out[level] = stacked.transpose(1, 2).reshape(stacked.shape[0], stacked.shape[2], h, w)
        return out


class CaptureAttnProcessor:
    """Attention processor that computes explicit probabilities and reports cross-attention maps.

    Mirrors diffusers' ``AttnProcessor2_0`` (spatial/group norm, cross norm, residual, output rescale) but
    computes ``P = softmax(Q K^T * attn.scale + mask)`` explicitly, stores ``P.mean(heads)`` when the layer
    is a cross-attention (``encoder_hidden_states`` given) and returns ``P V``.

    Args:
        store: where cross-attention maps go (``None``: compute but do not keep).
        level: resolution level reported with each map.
        keep_self: also store self-attention maps (the original code stored them; used by the baseline).
    """

    def __init__(self, store: CrossAttentionStore | None, level: int | None, keep_self: bool = False) -> None:
        self.store = store
        self.level = level
        self.keep_self = keep_self

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch_size, key_len, _ = encoder_hidden_states.shape if is_cross else hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if not is_cross:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        scores = torch.matmul(query, key.transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask
        # softmax in fp32 even under bf16 autocast: the maps are features of the head, and CPU autocast would
        # otherwise normalise bf16 scores (8 mantissa bits) over up to 77 tokens (no-op in fp32)
        probs = scores.float().softmax(dim=-1)  # [B, heads, Q, K]
        if self.store is not None and self.level is not None and (is_cross or self.keep_self):
            self.store.add(self.level, probs.mean(dim=1), cross=is_cross)
        hidden_states = torch.matmul(probs.to(value.dtype), value)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def install_attention_capture(
    unet: nn.Module,
    store: CrossAttentionStore,
    levels: set[int] | frozenset[int],
    explicit_all: bool = False,
) -> dict[str, object]:
    """Install capture processors on the cross-attention layers of ``levels``; return the previous ones.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        store: receives the maps.
        levels: resolution levels whose cross-attention maps are used (``{1, 2}`` for VPD's A32).
        explicit_all: baseline mode, the original's cost model: every attention layer (self and cross, all
            levels) computes explicit probabilities, and the used levels also keep their self-attention
            maps in memory as the original ``AttentionStore`` did.

    Returns:
        The processors in place before, to hand to :func:`remove_attention_capture`.
    """
    previous = dict(unet.attn_processors)
    num_levels = len(unet.config.block_out_channels)
    new = {}
    for name, proc in previous.items():
        level = attention_level(name, num_levels)
        used = level in levels and name.endswith("attn2.processor")
        if explicit_all:
            keep = level in levels
            new[name] = CaptureAttnProcessor(store if keep else None, level, keep_self=keep)
        elif used:
            new[name] = CaptureAttnProcessor(store, level)
        else:
            new[name] = proc
    unet.set_attn_processor(new)
    return previous


def remove_attention_capture(unet: nn.Module, previous: dict[str, object]) -> None:
    """Put back the processors returned by :func:`install_attention_capture`."""
    unet.set_attn_processor(dict(previous))
