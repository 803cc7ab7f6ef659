"""Exact training-memory accounting: bytes of parameters, gradients and optimizer state, without allocating.

:func:`count_training_bytes` counts, for a model (built on any device, ``torch.device("meta")`` included) and an
optimizer kind, the bytes the training state occupies -- every parameter and buffer at its own dtype, one
gradient per trainable parameter (same dtype as the parameter, as autograd accumulates it), and the optimizer
state exactly as the optimizer allocates it on its first step:

- ``adamw`` (``torch.optim.AdamW``, not fused/capturable): ``exp_avg`` and ``exp_avg_sq`` like the parameter
  (``zeros_like``) and a 0-d float32 ``step`` tensor: ``2 * numel * itemsize + 4`` per trainable parameter;
- ``adamw8bit`` (``torchao.optim.AdamW8bit``): a parameter with at least 4096 elements whose count is a multiple
  of ``block_size`` (256) gets two 8-bit states, each holding ``numel`` uint8 codes, ``numel / block_size``
  float32 scales and its own 256-entry float32 quantisation map; any other parameter gets two ``zeros_like``
  states as AdamW; plus the float32 ``step``;
- ``sgd`` (no momentum): nothing.

:func:`optimizer_state_bytes` measures the same thing on a real optimizer after a step (unique storages, tensor
subclasses such as torchao's ``OptimState8bit`` opened into their inner tensors); the tests check that the two
agree to the byte. Activations are not counted here: they depend on batch, resolution and kernels and are
measured by ``scripts/bench_memory.py``.

:func:`build_sd15_model` builds a task model from a composed training configuration on the meta device with
full-size components of the configuration's backbone family (``backbone=sd15|sd21|sd21_base|sdxl``: the
configurations shipped in ``backbone/sd_configs/<family>``), so the counts above hold for the real model without
loading or allocating 4 GB (SDXL: 10 GB) of weights; ``scripts/bench_memory.py --presets`` and
``tests/test_memory_presets.py`` combine it with a ``memory=`` preset's budget. For ``task=multitask`` it builds the
multi-task model: one shared backbone and every trained task's head, text adapter and (referring) text encoder,
counted once each; :func:`activation_images` gives the images whose activations a step holds at once (the largest
task's micro-batch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "OPTIMIZER_KINDS",
    "MemoryCount",
    "activation_images",
    "build_meta_model",
    "build_sd15_model",
    "count_training_bytes",
    "optimizer_kind",
    "optimizer_state_bytes",
    "tensor_bytes",
]

#: Optimizer kinds :func:`count_training_bytes` knows, and the classes (``_target_``) that map to them.
OPTIMIZER_KINDS: dict[str, tuple[str, ...]] = {
    "adamw": ("torch.optim.AdamW", "torch.optim.Adam"),
    "adamw8bit": ("torchao.optim.AdamW8bit", "torchao.optim.Adam8bit"),
    "sgd": ("torch.optim.SGD",),
}

#: torchao's rule (after bitsandbytes): only tensors of at least this many elements are quantised.
MIN_8BIT_SIZE = 4096
#: Entries of the quantisation map every 8-bit state carries (float32).
QMAP_ENTRIES = 256

GB = 10**9


@dataclass(frozen=True)
class MemoryCount:
    """Bytes of the training state of one model (no activations). ``total`` = parameters + buffers + gradients +
    optimizer state."""

    trainable_params: int
    frozen_params: int
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def total(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.grad_bytes + self.optimizer_bytes

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


def _adamw_state_bytes(param: torch.Tensor) -> int:
    return 2 * param.numel() * _itemsize(param.dtype) + 4  # exp_avg, exp_avg_sq (zeros_like), step (0-d fp32)


def _adamw8bit_state_bytes(param: torch.Tensor, block_size: int) -> int:
    n = param.numel()
    if n >= MIN_8BIT_SIZE and n % block_size == 0:
        one_state = n + 4 * (n // block_size) + 4 * QMAP_ENTRIES  # uint8 codes, fp32 scales, fp32 qmap
        return 2 * one_state + 4
    return _adamw_state_bytes(param)


def optimizer_kind(target: str | type) -> str:
    """``"adamw"``, ``"adamw8bit"`` or ``"sgd"`` for an optimizer class or its dotted name (a ``_target_``)."""
    name = target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"
    short = name.rsplit(".", 1)[-1]
    for kind, names in OPTIMIZER_KINDS.items():
        if name in names or short in {n.rsplit(".", 1)[-1] for n in names}:
            return kind
    known = ", ".join(n for names in OPTIMIZER_KINDS.values() for n in names)
    raise ValueError(f"no memory rule for optimizer '{name}'; known: {known}")


def count_training_bytes(
    model: nn.Module,
    optimizer: str = "adamw",
    *,
    block_size: int = 256,
    params: Iterable[nn.Parameter] | None = None,
) -> MemoryCount:
    """Exact bytes of ``model``'s parameters, buffers, gradients and ``optimizer`` state (see the module docstring).

    Args:
        model: any module, on any device (``meta``: nothing is allocated).
        optimizer: ``"adamw"``, ``"adamw8bit"``, ``"sgd"``, or an optimizer class / dotted name.
        block_size: torchao's 8-bit block size.
        params: the parameters the optimizer holds (default: every parameter with ``requires_grad``).
    """
    kind = optimizer if optimizer in OPTIMIZER_KINDS else optimizer_kind(optimizer)
    seen: set[int] = set()
    trainable_params = frozen_params = param_bytes = 0
    for param in model.parameters():  # parameters() already yields shared parameters once
        if id(param) in seen:
            continue
        seen.add(id(param))
        param_bytes += tensor_bytes(param)
        if param.requires_grad:
            trainable_params += param.numel()
        else:
            frozen_params += param.numel()
    buffer_bytes = sum(tensor_bytes(b) for b in model.buffers())
    optimized = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    grad_bytes = sum(tensor_bytes(p) for p in optimized)
    if kind == "adamw":
        optimizer_bytes = sum(_adamw_state_bytes(p) for p in optimized)
    elif kind == "adamw8bit":
        optimizer_bytes = sum(_adamw8bit_state_bytes(p, block_size) for p in optimized)
    else:
        optimizer_bytes = 0
    return MemoryCount(trainable_params, frozen_params, param_bytes, buffer_bytes, grad_bytes, optimizer_bytes)


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor's elements (meta tensors included)."""
    return tensor.numel() * _itemsize(tensor.dtype)


def _storages(value: Any) -> Iterable[torch.Tensor]:
    """Plain tensors inside an optimizer state value (tensor subclasses opened with ``__tensor_flatten__``)."""
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and hasattr(value, "__tensor_flatten__"):
            names, _ = value.__tensor_flatten__()
            for name in names:
                yield from _storages(getattr(value, name))
        else:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _storages(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _storages(v)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes a real optimizer's state holds now (each storage counted once, even when shared)."""
    seen: dict[tuple[int, int], int] = {}
    for state in optimizer.state.values():
        for tensor in _storages(state):
            storage = tensor.untyped_storage()
            seen[(storage.data_ptr(), id(storage) if storage.data_ptr() == 0 else 0)] = storage.nbytes()
    return sum(seen.values())


# ------------------------------------------------------------------------------------ SD-1.5 on meta
def _family_config(component: str, family: str = "sd15") -> dict:
    folder = Path(__file__).parent / "backbone" / "sd_configs" / family / component
    return json.loads((folder / "config.json").read_text())


def build_sd15_model(cfg, device: str | torch.device = "meta", components: dict[str, dict] | None = None) -> nn.Module:
    """The task model of a composed training config (``task``, ``finetune``, ``memory``, ``backbone.*`` and
    ``model.*`` overrides applied) with full-size UNet, VAE and text encoder(s) of its backbone family
    (``cfg.backbone.family``, SD-1.5 by default), built on ``device``.

    The components come from the configurations shipped in ``backbone/sd_configs/<family>`` (not from
    ``sd_path``) and the prompt embeddings are tensors of their real shape: on ``"meta"`` (the default) nothing
    is read or allocated; on a real device the weights are random (for benchmarks). ``components`` replaces
    component configurations by name (``{"unet": {...}, "vae": {...}}``, e.g. the tiny ones for a smoke run).
    """
    from omegaconf import OmegaConf as _OC

    family = _OC.select(cfg, "backbone.family", default=None) or "sd15"
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    configs = {name: _family_config(name, family) for name in names}
    configs.update(components or {})
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import CLIPTextConfig, CLIPTextModel

    from vpd_lightning.backbone import DiffusionBackbone

    backbone_cfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    for key in ("_target_", "pretrained_model_name_or_path", "torch_dtype", "single_file_config"):
        backbone_cfg.pop(key, None)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        backbone = DiffusionBackbone(unet, vae, **backbone_cfg)
        def built(model_cfg) -> dict[str, Any]:  # a task model's embeddings and text encoder, real-sized
            overrides: dict[str, Any] = {}
            if "class_embeddings" in model_cfg:
                names = model_cfg.class_embeddings.class_names
                names = OmegaConf.to_container(names, resolve=True) if OmegaConf.is_config(names) else list(names)
                overrides["class_embeddings"] = torch.randn(len(names), backbone.context_dim)
            if "text_encoder" in model_cfg:
                encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
                if "text_encoder_2" in configs:
                    from transformers import CLIPTextModelWithProjection

                    from vpd_lightning.backbone.text import DualTextEncoder

                    second = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(configs["text_encoder_2"]))
                    encoder = DualTextEncoder(encoder, second)
                overrides["text_encoder"] = encoder
            return overrides

        model_cfg = cfg.model
        if str(model_cfg.get("_target_", "")).endswith("MultiTaskModel"):  # one backbone, every trained task
            prebuilt = {task: built(model_cfg[task]) for task in model_cfg.tasks}
            return instantiate(model_cfg, _convert_="all", backbone=backbone, prebuilt=prebuilt)
        return instantiate(model_cfg, _convert_="all", backbone=backbone, **built(model_cfg))


def activation_images(cfg) -> int:
    """Images whose activations a training step of ``cfg`` holds at once: the per-GPU (micro-)batch
    ``data.batch_size``; for ``task=multitask`` the largest ``data.<task>.batch_size`` of the trained tasks (each
    task's micro-batches run forward + backward one at a time, so one of them is alive at a time)."""
    if str(cfg.model.get("_target_", "")).endswith("MultiTaskModel"):
        return max(int(cfg.data[task].batch_size) for task in cfg.multitask.tasks)
    return int(cfg.data.batch_size)


#: :func:`build_sd15_model` builds any family's model (the name is kept for existing callers).
build_meta_model = build_sd15_model


def gb(value: float) -> float:
    """Bytes -> decimal gigabytes (10^9 bytes), rounded to 0.01."""
    return round(value / GB, 2)


def ceil_gb(value: float) -> float:
    return math.ceil(value / GB * 100) / 100
