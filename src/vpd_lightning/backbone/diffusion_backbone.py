"""The shared VPD backbone: frozen VAE encoder + one UNet pass at a fixed timestep -> multi-scale features.

Faithful to the original (vpd-reference §2):

- the image (``[B,3,H,W]`` in ``[-1, 1]``) goes through the frozen VAE *encoder*; the latent is the posterior
  mean, **not** multiplied by the SD scaling factor 0.18215 (VPD never applies it);
- the UNet runs once at ``t = 1`` with no noise, conditioned on ``context`` (text embeddings already through
  the text adapter); its output head (``conv_norm_out``/``conv_out``) is never run;
- features are taken where VPD taps ldm's output blocks 1, 4, 7 and 11: the outputs of
  ``up_blocks[0].resnets[1]``, ``up_blocks[1].attentions[1]``, ``up_blocks[2].attentions[1]`` and
  ``up_blocks[3]`` (latent strides 8, 4, 2, 1; image strides 64, 32, 16, 8);
- cross-attention maps (head mean, equal-weight mean over the down and up cross-attention layers of one
  resolution) are concatenated to the features of that resolution: A32 (latent strides 2 and 4) by default,
  A64 (also stride 1) or none as options; detached by default, since the original's checkpointed
  transformer blocks produced maps without an autograd graph.

Unlike the original, any input whose sides are multiples of 8 works, square or not (maps are keyed by
down-sampling level, and diffusers forwards the up-sampling sizes).

**Families** (:mod:`vpd_lightning.backbone.families`): SD-1.5, SD 2.x and SDXL UNets all work. The taps follow
the topology: for every up block but the last, the output of its second-to-last layer (ldm's output block
``3k + 1``: the last layer whose output is not upsampled by the block's final layer), and the output of the last
up block; ``len(block_out_channels)`` features (SD-1.x/2.x: 4, SDXL: 3), channels ``block_out_channels[level]``.
Attention maps are keyed by level as for SD-1.5 (SDXL has no cross-attention at level 0, so ``a64`` is refused
there). SDXL's added conditioning is fixed for perception: ``text_embeds`` = zeros (SDXL's empty-prompt
conditioning, ``force_zeros_for_empty_prompt``), ``time_ids`` = ``(H, W, 0, 0, H, W)`` of the image given to the
backbone (original size = target size = the input, no crop: SDXL's "uncropped image of this size").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from vpd_lightning.backbone.attention import (
    CrossAttentionStore,
    install_attention_capture,
    remove_attention_capture,
)
from vpd_lightning.backbone.compile import COMPILE_MODES, CompileMode, compile_repeated_blocks
from vpd_lightning.backbone.finetune import apply_finetune, normalize_finetune

__all__ = ["ATTENTION_LEVELS", "FROZEN_DTYPES", "DiffusionBackbone", "resolve_dtype"]

#: ``backbone.frozen_dtype`` values: the storage type of every frozen backbone weight.
FROZEN_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(value: str | torch.dtype | None, option: str = "backbone.frozen_dtype") -> torch.dtype | None:
    """``"bf16"``/``"bfloat16"``/``torch.bfloat16`` -> ``torch.bfloat16`` (``None`` stays ``None``); a clear error
    naming ``option`` and the valid values otherwise."""
    if value is None or isinstance(value, torch.dtype):
        return value
    aliases = {**FROZEN_DTYPES, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    key = str(value).removeprefix("torch.").lower()
    if key not in aliases:
        raise ValueError(f"{option} must be one of {', '.join(FROZEN_DTYPES)} (or null); got '{value}'")
    return aliases[key]


#: Resolution levels (latent stride ``2**level``) whose cross-attention maps each variant uses.
ATTENTION_LEVELS: dict[str, frozenset[int]] = {
    "a32": frozenset({1, 2}),
    "a64": frozenset({0, 1, 2}),
    "none": frozenset(),
}

AttentionVariant = Literal["a32", "a64", "none"]


class DiffusionBackbone(nn.Module):
    """Stable Diffusion UNet (+ frozen VAE encoder) as a multi-scale perception backbone.

    Args:
        unet: a built diffusers ``UNet2DConditionModel`` with the SD-1.x topology (4 resolution levels,
            at least 2 layers per block).
        vae: a built diffusers ``AutoencoderKL``; only its encoder is kept (the decoder is deleted).
        timestep: the single diffusion timestep the UNet is run at (VPD: 1).
        attention: which cross-attention maps to concatenate: ``"a32"`` (VPD default), ``"a64"`` or ``"none"``.
        detach_attention: cut the gradient through the maps (VPD behaviour) or keep it.
        scale_latents: multiply latents by ``vae.config.scaling_factor`` (SD training convention; VPD: no).
        sample_posterior: sample the VAE posterior instead of taking its mean (VPD: mean).
        add_noise: noise the latent to ``timestep`` with the SD-1.5 DDPM schedule (VPD: no noise).
        train_unet: fine-tune the UNet (VPD: yes); ``False`` freezes it (the same as ``finetune="frozen"``).
        finetune: which UNet parameters train: a mapping with ``mode`` (``full``, ``lora``, ``partial``,
            ``frozen``) and that mode's options, or the mode's name; ``None``: ``full`` (see
            :mod:`vpd_lightning.backbone.finetune`). The applied configuration is kept as ``self.finetune``.
        gradient_checkpointing: trade compute for memory in the UNet (the original ran ldm with
            ``use_checkpoint``; numerically the same features).
        attention_impl: ``"fast"`` runs every attention layer through fused SDPA except the cross-attention
            layers whose maps are used; ``"explicit"`` computes explicit softmax in every layer, as the
            original code did (slower; same outputs up to float rounding).
        frozen_dtype: store every *frozen* weight (the VAE, the UNet parameters the ``finetune`` mode freezes,
            e.g. the base of LoRA layers) in ``"bf16"`` or ``"fp16"`` to halve their memory; what trains keeps
            fp32 master weights, so gradients and optimizer state stay fp32. ``None`` (VPD): everything fp32.
            The VAE then runs in that type; a UNet holding low-precision weights runs under autocast to that
            type (its fp32 trained weights are cast per operation, gradients reach them in fp32); features leave
            the backbone in fp32.
        compile: ``"regional"`` compiles the repeated transformer and resnet blocks of the UNet and the VAE encoder
            with ``torch.compile`` (see :mod:`vpd_lightning.backbone.compile`; the first forward of each new input
            shape pays the compilation); ``"none"`` (default) runs eagerly.
        compile_options: keyword arguments of ``torch.compile`` for ``compile="regional"`` (e.g. ``mode``,
            ``backend``, ``dynamic``).
        channels_last: hold the UNet's and the VAE's convolution weights, and run their activations, in the
            channels-last (NHWC) memory format. Same arithmetic up to the kernels' summation order; faster on CPUs
            (oneDNN's native layout, no reorder around each convolution; the transformer blocks' NCHW -> tokens
            permutes become views) and on GPUs with tensor cores (cuDNN's NHWC kernels). A task built on this
            backbone converts its head as well. ``False`` (default, the original): contiguous NCHW.
        family: the Stable Diffusion family the UNet must belong to (``sd15``, ``sd21``, ``sd21_base``, ``sdxl``);
            a UNet of another topology is refused naming both. ``None``: whatever the UNet is (kept in
            ``self.family``).
    """

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        *,
        timestep: int = 1,
        attention: AttentionVariant = "a32",
        detach_attention: bool = True,
        scale_latents: bool = False,
        sample_posterior: bool = False,
        add_noise: bool = False,
        train_unet: bool = True,
        gradient_checkpointing: bool = False,
        attention_impl: Literal["fast", "explicit"] = "fast",
        finetune: Mapping[str, Any] | str | None = None,
        frozen_dtype: str | torch.dtype | None = None,
        compile: CompileMode = "none",
        compile_options: dict | None = None,
        family: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_LEVELS:
            raise ValueError(f"backbone.attention must be one of {sorted(ATTENTION_LEVELS)}, got '{attention}'")
        if attention_impl not in ("fast", "explicit"):
            raise ValueError(f"backbone.attention_impl must be 'fast' or 'explicit', got '{attention_impl}'")
        if compile not in COMPILE_MODES:
            raise ValueError(f"backbone.compile must be one of {list(COMPILE_MODES)}, got '{compile}'")
        if not 0 <= int(timestep) < 1000:
            raise ValueError(f"backbone.timestep must be in [0, 1000), got {timestep}")
        from vpd_lightning.backbone.families import check_family

        self.family = check_family(family, unet.config)
        self._check_topology(unet)
        self._check_attention_levels(unet, attention)
        self.unet = unet
        self.vae = vae
        if getattr(self.vae, "decoder", None) is not None:
            del self.vae.decoder  # only the encoder is used
        self.vae.requires_grad_(False)
        self.vae.eval()
        finetune = normalize_finetune(finetune)
        if not train_unet:
            if finetune["mode"] not in ("full", "frozen"):
                mode = finetune["mode"]
                raise ValueError(f"backbone.train_unet=false contradicts finetune={mode}; use finetune=frozen")
            finetune = normalize_finetune("frozen")
        # also freezes the never-run output head (conv_norm_out, conv_out) so optimizers and DDP never see it
        self.finetune = apply_finetune(self.unet, **finetune)
        self.frozen_dtype = resolve_dtype(frozen_dtype)
        if self.frozen_dtype is not None:
            self._cast_frozen(self.frozen_dtype)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)

        self.timestep = int(timestep)
        self.attention = attention
        self.attention_levels = ATTENTION_LEVELS[attention]
        self.detach_attention = detach_attention
        self.scale_latents = scale_latents
        self.sample_posterior = sample_posterior
        self.add_noise = add_noise
        self.attention_impl = attention_impl
        self.store = CrossAttentionStore()
        self._previous_processors: dict | None = None
        self._hooks: list = []
        self._taps: dict[int, torch.Tensor] = {}
        #: set ``record_attention = True`` to keep the maps of the next forwards in ``last_attention``
        self.record_attention = False
        self.last_attention: dict[int, torch.Tensor] = {}
        self.install()
        self.compile_mode = compile
        if compile == "regional":
            options = dict(compile_options or {})
            compile_repeated_blocks(self.unet, **options)
            compile_repeated_blocks(self.vae.encoder, **options)
        self.train()  # from_pretrained leaves modules in eval mode; the frozen VAE stays there

    # ------------------------------------------------------------------------------------------------ setup
    @staticmethod
    def _check_topology(unet: nn.Module) -> None:
        cfg = unet.config
        problems = []
        if len(cfg.block_out_channels) < 3 or len(unet.up_blocks) != len(cfg.block_out_channels):
            problems.append(f"at least 3 resolution levels (got {len(cfg.block_out_channels)})")
        layers = cfg.layers_per_block
        layers = min(layers) if isinstance(layers, (list, tuple)) else layers
        if layers < 2:
            problems.append(f"at least 2 layers per block (got {cfg.layers_per_block})")
        if getattr(cfg, "class_embed_type", None) is not None or getattr(cfg, "addition_embed_type", None) not in (
            None,
            "text_time",
        ):
            problems.append("no class embeddings and no added conditioning other than SDXL's text_time")
        if problems:
            raise ValueError("DiffusionBackbone needs an SD-1.x/2.x/XL-shaped UNet: " + "; ".join(problems))

    def _check_attention_levels(self, unet: nn.Module, attention: str) -> None:
        """Every level whose maps ``attention`` uses must have cross-attention layers."""
        missing = [
            level
            for level in sorted(ATTENTION_LEVELS[attention])
            if level >= len(unet.down_blocks) or not getattr(unet.down_blocks[level], "has_cross_attention", False)
        ]
        if missing:
            raise ValueError(
                f"backbone.attention={attention} uses the cross-attention maps of levels "
                f"{sorted(ATTENTION_LEVELS[attention])}, but the {self.family} UNet has no cross-attention at level(s) "
                f"{missing}; use attention=a32 or none"
            )

    @property
    def num_levels(self) -> int:
        """Resolution levels of the UNet, i.e. number of features (SD-1.x/2.x: 4, SDXL: 3)."""
        return len(self.unet.config.block_out_channels)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None = None,
        *,
        unet_subfolder: str = "unet",
        vae_subfolder: str = "vae",
        torch_dtype: torch.dtype | str | None = None,
        single_file_config: str | os.PathLike | None = None,
        **options,
    ) -> DiffusionBackbone:
        """Build the backbone from a diffusers-format folder, a hub id (default: the ``family``'s, Stable Diffusion
        v1.5 without one) or an original single-file checkpoint (``.ckpt``/``.safetensors``, e.g.
        ``v1-5-pruned-emaonly.ckpt``), whose component configurations come from ``single_file_config`` (default:
        the family's, shipped in the package)."""
        from vpd_lightning.backbone.families import get_family
        from vpd_lightning.backbone.loading import (
            family_config_dir,
            is_single_file,
            load_unet,
            load_vae,
            single_file_family,
        )

        family = options.get("family")
        source = pretrained_model_name_or_path or get_family(family or "sd15").hub_id
        if single_file_config is None and is_single_file(source):  # the family's configurations (else the file's)
            single_file_config = family_config_dir(family or single_file_family(source))
        kwargs = {"single_file_config": single_file_config} if single_file_config is not None else {}
        if torch_dtype is not None:
            kwargs["torch_dtype"] = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
        unet = load_unet(source, unet_subfolder, **kwargs)
        from vpd_lightning.backbone.families import check_family

        check_family(family, unet.config, where=f"'{source}'")  # before the VAE is read: one clear line
        vae = load_vae(source, vae_subfolder, **kwargs)
        return cls(unet, vae, **options)

    def _cast_frozen(self, dtype: torch.dtype) -> None:
        """Store every frozen parameter of the VAE and the UNet in ``dtype`` (trainable ones stay as they are).

        Parameters are replaced in place (``param.data``), so peft's LoRA layers, hooks and processors keep
        pointing at them; on the meta device nothing is allocated."""
        for module in (self.vae, self.unet):
            for param in module.parameters():
                if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
                    param.data = param.data.to(dtype)

    @property
    def unet_autocast_dtype(self) -> torch.dtype | None:
        """The autocast type of the UNet forward: ``frozen_dtype`` when the UNet holds weights of that type (a
        frozen, LoRA or partial UNet), else ``None`` (a fully trained UNet runs in its own fp32)."""
        dtype = self.frozen_dtype
        if dtype is None or dtype == torch.float32:
            return None
        return dtype if any(p.dtype == dtype for p in self.unet.parameters()) else None

    @property
    def tap_names(self) -> dict[int, str]:
        """Module names (in ``self.unet``) whose outputs are the features, by level (0 = latent stride 1).

        Every up block but the last: its second-to-last layer (the transformer of that layer when it has one,
        else its resnet); the last up block: the block. SD-1.5: ``up_blocks.0.resnets.1``,
        ``up_blocks.1.attentions.1``, ``up_blocks.2.attentions.1``, ``up_blocks.3`` (VPD's ldm output blocks 1, 4,
        7, 11); SDXL: ``up_blocks.0.attentions.1``, ``up_blocks.1.attentions.1``, ``up_blocks.2``."""
        blocks = self.unet.up_blocks
        names = {}
        for index, block in enumerate(blocks[:-1]):
            layer = len(block.resnets) - 2
            attentions = getattr(block, "attentions", None)
            kind = "attentions" if attentions is not None and len(attentions) > layer else "resnets"
            names[len(blocks) - 1 - index] = f"up_blocks.{index}.{kind}.{layer}"
        names[0] = f"up_blocks.{len(blocks) - 1}"
        return dict(sorted(names.items()))

    def _tap_modules(self) -> dict[int, nn.Module]:
        """Modules whose outputs are VPD's features, by level (see :attr:`tap_names`)."""
        return {level: self.unet.get_submodule(name) for level, name in self.tap_names.items()}

    def install(self) -> None:
        """Install the capture processors and feature hooks (done by ``__init__``)."""
        if self._previous_processors is not None:
            return
        levels = self.attention_levels
        explicit = self.attention_impl == "explicit"
        if levels or explicit:
            self._previous_processors = install_attention_capture(self.unet, self.store, levels, explicit_all=explicit)
        else:
            self._previous_processors = {}
        for level, module in self._tap_modules().items():
            self._hooks.append(module.register_forward_hook(self._make_hook(level)))

    def remove(self) -> None:
        """Remove processors and hooks: the UNet is the stock diffusers model again."""
        if self._previous_processors:
            remove_attention_capture(self.unet, self._previous_processors)
        self._previous_processors = None
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _make_hook(self, level: int):
        def hook(module, args, output):
            self._taps[level] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    def train(self, mode: bool = True) -> DiffusionBackbone:
        super().train(mode)
        self.vae.eval()  # frozen, always in inference mode
        return self

    # ----------------------------------------------------------------------------------------- introspection
    @property
    def context_dim(self) -> int:
        """Width of the text context the UNet's cross-attention expects (768 for SD-1.5)."""
        return int(self.unet.config.cross_attention_dim)

    def out_channels(self, num_tokens: int) -> list[int]:
        """Channels of the outputs (image strides 8, 16, ...: four for SD-1.x/2.x, three for SDXL) for a context
        of ``num_tokens`` tokens.

        Derived from ``unet.config.block_out_channels``; levels with attention maps add ``num_tokens``.
        For SD-1.5 and A32 with 150 tokens: ``[320, 790, 1430, 1280]``; SDXL: ``[320, 790, 1430]``.
        """
        channels = list(self.unet.config.block_out_channels)
        return [c + (num_tokens if level in self.attention_levels else 0) for level, c in enumerate(channels)]

    # ------------------------------------------------------------------------------------------------ forward
    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Frozen VAE encoding of ``image`` in ``[-1, 1]`` to the latent the UNet sees."""
        vae_dtype = next(self.vae.parameters()).dtype
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        posterior = self.vae.encode(image.to(vae_dtype)).latent_dist
        latents = posterior.sample() if self.sample_posterior else posterior.mode()
        if self.scale_latents:
            latents = latents * self.vae.config.scaling_factor
        return latents.detach()

    def _noise(self, latents: torch.Tensor) -> torch.Tensor:
        # SD-1.5 schedule: scaled_linear betas from 0.00085 to 0.012 over 1000 steps.
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)[self.timestep].item()
        return alpha_bar**0.5 * latents + (1 - alpha_bar) ** 0.5 * torch.randn_like(latents)

    def added_conditioning(self, batch_size: int, image_size: tuple[int, int], device, dtype) -> dict | None:
        """SDXL's ``added_cond_kwargs`` for perception (``None`` for the other families): ``text_embeds`` zeros
        ``[B, D_pooled]`` and ``time_ids`` ``(H, W, 0, 0, H, W)`` of the input image (see the module docstring)."""
        cfg = self.unet.config
        if getattr(cfg, "addition_embed_type", None) != "text_time":
            return None
        pooled = int(cfg.projection_class_embeddings_input_dim) - 6 * int(cfg.addition_time_embed_dim)
        h, w = image_size
        time_ids = torch.tensor([h, w, 0, 0, h, w], device=device, dtype=dtype).expand(batch_size, 6)
        return {"text_embeds": torch.zeros(batch_size, pooled, device=device, dtype=dtype), "time_ids": time_ids}

    def _unet_features(
        self,
        sample: torch.Tensor,
        context: torch.Tensor,
        encoder_attention_mask=None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        """The UNet forward of diffusers, without its output head; taps land in ``self._taps``."""
        unet = self.unet
        upsample_factor = 2**unet.num_upsamplers
        forward_upsample_size = any(s % upsample_factor != 0 for s in sample.shape[-2:])
        if encoder_attention_mask is not None:
            encoder_attention_mask = (1 - encoder_attention_mask.to(sample.dtype)) * -10000.0
            encoder_attention_mask = encoder_attention_mask.unsqueeze(1)
        timestep = torch.full((sample.shape[0],), self.timestep, device=sample.device, dtype=torch.long)
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep))
        if image_size is None:
            image_size = (sample.shape[-2] * 8, sample.shape[-1] * 8)
        added = self.added_conditioning(sample.shape[0], image_size, sample.device, sample.dtype)
        if added is not None:
            emb = emb + unet.get_aug_embed(emb=emb, encoder_hidden_states=context, added_cond_kwargs=added)
        sample = unet.conv_in(sample)
        res_samples_all = (sample,)
        self._sizes = {}
        for level, block in enumerate(unet.down_blocks):
            self._sizes[level] = tuple(sample.shape[-2:])
            if getattr(block, "has_cross_attention", False):
                sample, res = block(
                    hidden_states=sample,
                    temb=emb,
                    encoder_hidden_states=context,
                    encoder_attention_mask=encoder_attention_mask,
                )
            else:
                sample, res = block(hidden_states=sample, temb=emb)
            res_samples_all += res
        if unet.mid_block is not None:
            if getattr(unet.mid_block, "has_cross_attention", False):
                sample = unet.mid_block(
                    sample, emb, encoder_hidden_states=context, encoder_attention_mask=encoder_attention_mask
                )
            else:
                sample = unet.mid_block(sample, emb)
        for index, block in enumerate(unet.up_blocks):
            res = res_samples_all[-len(block.resnets) :]
            res_samples_all = res_samples_all[: -len(block.resnets)]
            upsample_size = None
            if index < len(unet.up_blocks) - 1 and forward_upsample_size:
                upsample_size = res_samples_all[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                sample = block(
                    hidden_states=sample,
                    temb=emb,
                    res_hidden_states_tuple=res,
                    encoder_hidden_states=context,
                    upsample_size=upsample_size,
                    encoder_attention_mask=encoder_attention_mask,
                )
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)
        # conv_norm_out / conv_act / conv_out (the noise-prediction head) are deliberately not run.

    def forward(
        self,
        image: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Multi-scale features of ``image``.

        Args:
            image: ``[B, 3, H, W]`` in ``[-1, 1]``; ``H`` and ``W`` multiples of 8.
            context: ``[B, N, D]`` text context (already through the text adapter), ``D = context_dim``.
            context_mask: optional ``[B, N]`` boolean mask of context tokens to attend to (VPD attends to all).

        Returns:
            One tensor per resolution level, highest resolution first (image strides 8, 16, 32[, 64]: four for
            SD-1.x/2.x, three for SDXL), with channels ``out_channels(N)``.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {tuple(image.shape)}")
        if image.shape[-2] % 8 or image.shape[-1] % 8:
            raise ValueError(f"image sides must be multiples of 8 (the VAE's stride), got {tuple(image.shape[-2:])}")
        if context.ndim != 3 or context.shape[0] != image.shape[0] or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must be [B={image.shape[0]}, N, D={self.context_dim}] (the {self.family} UNet's context "
                f"width), got {tuple(context.shape)}"
            )
        latents = self.encode(image)
        if self.add_noise:
            latents = self._noise(latents)
        autocast_dtype = self.unet_autocast_dtype
        unet_dtype = torch.float32 if autocast_dtype is not None else self.unet.dtype
        self.store.reset()
        self._taps = {}
        cast = (
            contextlib.nullcontext() if autocast_dtype is None else torch.autocast(latents.device.type, autocast_dtype)
        )
        with cast:
            self._unet_features(
                latents.to(unet_dtype), context.to(unet_dtype), context_mask, image_size=tuple(image.shape[-2:])
            )
        self.store.recording = False  # gradient-checkpoint recomputation must not add maps
        features = [self._taps[level] for level in range(self.num_levels)]
        if autocast_dtype is not None:
            features = [f.float() for f in features]
        self._taps = {}
        if self.attention_levels:
            maps = self.store.aggregate(self._sizes)
            self.store.reset()
            if self.record_attention:
                self.last_attention = {level: m.detach().float().cpu() for level, m in maps.items()}
            for level in sorted(self.attention_levels):
                attn = maps[level].to(features[level].dtype)
                if self.detach_attention:
                    attn = attn.detach()
                features[level] = torch.cat([features[level], attn], dim=1)
        return features

    @torch.no_grad()
    def attention_maps(
        self, image: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """The aggregated cross-attention maps ``{level: [B, N, h, w]}`` (float32, CPU) of one forward.

        Levels are the ones the configured variant uses (``ATTENTION_LEVELS``; A32: levels 1 and 2, at 1/16
        and 1/32 of the image: 32x32 and 16x16 at 512 px); empty with ``attention="none"``. For pictures and
        analysis: it runs a full forward without gradients.
        """
        previous = self.record_attention
        self.record_attention, self.last_attention = True, {}
        try:
            self(image, context, context_mask)
        finally:
            self.record_attention = previous
        maps, self.last_attention = self.last_attention, {}
        return maps

    def extra_repr(self) -> str:
        return (
            f"timestep={self.timestep}, attention={self.attention}, detach_attention={self.detach_attention}, "
            f"scale_latents={self.scale_latents}, attention_impl={self.attention_impl}, compile={self.compile_mode}, "
            f"finetune={self.finetune['mode']}, family={self.family}"
            + (f", frozen_dtype={str(self.frozen_dtype).removeprefix('torch.')}" if self.frozen_dtype else "")
            + (", channels_last=True" if self.channels_last else "")
        )
