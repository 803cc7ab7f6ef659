"""SDXL's text side: two frozen CLIP text encoders whose penultimate layers, concatenated, are the context.

SDXL (``StableDiffusionXLPipeline.encode_prompt``) runs CLIP ViT-L/14 (``text_encoder``, 768 wide, padded with its
end token) and OpenCLIP ViT-bigG/14 (``text_encoder_2``, 1280 wide, padded with ``!``, id 0) on the same prompt
and concatenates ``hidden_states[-2]`` of both (no final LayerNorm): a ``[B, L, 2048]`` context. Both tokenizers
share one BPE vocabulary and differ only in the padding id, so :class:`DualTextEncoder` takes the ids of the
first tokenizer and re-pads them for the second (every position after the first end token becomes ``pad_id_2``):
exactly ``tokenizer_2``'s ids for prompts that fit ``max_length``.

Its output has the fields the tasks read from a ``CLIPTextModel`` output: ``last_hidden_state`` (the context) and
``pooler_output`` (the context at the end token: the class-embedding rule of VPD, which takes SD-1.5's final state
at the end token), plus ``text_embeds``, the projected pooled output of ``text_encoder_2`` (SDXL's added
conditioning during generation; the perception backbone uses zeros, see ``DiffusionBackbone``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

__all__ = ["DualTextEncoder", "DualTextOutput", "repad"]


def repad(input_ids: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """``input_ids`` with every position after the first ``eos_token_id`` of each row set to ``pad_token_id``."""
    is_eos = (input_ids == eos_token_id).int()
    after = (torch.cumsum(is_eos, dim=-1) - is_eos) > 0
    return input_ids.masked_fill(after, pad_token_id)


def eos_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the first end token of each row (the last position for rows without one)."""
    is_eos = input_ids == eos_token_id
    first = is_eos.int().argmax(dim=-1)
    return torch.where(is_eos.any(dim=-1), first, torch.full_like(first, input_ids.shape[-1] - 1))


@dataclass
class DualTextOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    text_embeds: torch.Tensor


class DualTextEncoder(nn.Module):
    """CLIP ViT-L + OpenCLIP ViT-bigG as SDXL uses them (see the module docstring).

    Args:
        text_encoder: a ``CLIPTextModel`` (SDXL's ``text_encoder``).
        text_encoder_2: a ``CLIPTextModelWithProjection`` (SDXL's ``text_encoder_2``).
        pad_token_id_2: ``tokenizer_2``'s padding id (SDXL: 0, the ``!`` token).
        eos_token_id: the end token of the shared vocabulary (default: the last id of the vocabulary).
    """

    def __init__(
        self,
        text_encoder: nn.Module,
        text_encoder_2: nn.Module,
        pad_token_id_2: int = 0,
        eos_token_id: int | None = None,
    ) -> None:
        super().__init__()
        if text_encoder.config.vocab_size != text_encoder_2.config.vocab_size:
            raise ValueError(
                f"text_encoder and text_encoder_2 must share one vocabulary, got {text_encoder.config.vocab_size} "
                f"and {text_encoder_2.config.vocab_size} tokens"
            )
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2
        self.pad_token_id_2 = int(pad_token_id_2)
        self.eos_token_id = int(eos_token_id if eos_token_id is not None else text_encoder.config.vocab_size - 1)
        hidden = text_encoder.config.hidden_size + text_encoder_2.config.hidden_size
        #: what the tasks read off a text encoder's config: the context width and the vocabulary size
        self.config = SimpleNamespace(hidden_size=hidden, vocab_size=text_encoder.config.vocab_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, input_ids: torch.Tensor, **_: object) -> DualTextOutput:
        ids_2 = repad(input_ids, self.eos_token_id, self.pad_token_id_2)
        out_1 = self.text_encoder(input_ids=input_ids, output_hidden_states=True)
        out_2 = self.text_encoder_2(input_ids=ids_2, output_hidden_states=True)
        context = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
        eos = eos_positions(input_ids, self.eos_token_id)
        pooled = context[torch.arange(context.shape[0], device=context.device), eos]
        return DualTextOutput(last_hidden_state=context, pooler_output=pooled, text_embeds=out_2.text_embeds)
