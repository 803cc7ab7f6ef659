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

Per family, :func:`activation_bytes` counts what autograd saves in a full-size forward on the meta device;
the ratio to SD-1.5's (``Family.activation_scale``) scales the activations measured for SD-1.5, and
:func:`fit_preset` / :func:`apply_memory_preset` (called by ``train``) fit a ``memory=`` preset's per-GPU batch x
accumulation to the family at its native resolution, or refuse with :class:`MemoryPresetError`.
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

from vpd_lightning.utils.errors import ConfigError

__all__ = [
    "OPTIMIZER_KINDS",
    "MemoryCount",
    "MemoryPresetError",
    "PresetFit",
    "activation_bytes",
    "activation_images",
    "apply_memory_preset",
    "build_meta_model",
    "build_sd15_model",
    "count_training_bytes",
    "family_activation_bytes",
    "fit_preset",
    "optimizer_kind",
    "optimizer_state_bytes",
    "preset_activations_per_image",
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


# ------------------------------------------------------------------------------------ activations on meta
class _FlashSDPA(torch.autograd.Function):
    """``scaled_dot_product_attention`` saving what a fused kernel (flash / memory-efficient, CPU or CUDA) saves for
    its backward: query, key, value, output and the float32 log-sum-exp per query -- not the ``[B, H, Q, K]``
    probabilities the math decomposition would keep (on the meta device torch decomposes SDPA into that)."""

    @staticmethod
    def forward(ctx, query, key, value, kwargs):
        with torch.no_grad():
            out = _SDPA(query, key, value, **kwargs)
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - counting runs the forward only
        raise NotImplementedError


_SDPA = torch.nn.functional.scaled_dot_product_attention


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    kwargs.update(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    return _FlashSDPA.apply(query, key, value, kwargs)


def activation_bytes(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward in one training-mode forward ``model(*inputs)``: each
    saved tensor once, parameters (and views of them, such as a transposed weight) excluded -- they are training
    state, counted by :func:`count_training_bytes`. ``scaled_dot_product_attention`` is counted as a fused kernel
    (see :class:`_FlashSDPA`); explicit softmax attention (the captured cross-attention layers) as it runs.

    Run on the meta device it counts a full-size forward exactly without allocating; it is the activation
    memory's *shape* (what grows with the family and the resolution), not a peak: the allocator, temporaries and
    the backward's own buffers come on top, which is why the presets scale a measured figure by a ratio of two
    such counts (:func:`family_activation_scale`)."""
    params = {id(p) for p in model.parameters()}
    saved: dict[int, tuple[torch.Tensor, int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(tensor) not in params and id(base) not in params:
            saved[id(tensor)] = (tensor, tensor_bytes(tensor))  # the tensor is held: its id stays unique
        return tensor

    was_training = model.training
    model.train()
    functional = torch.nn.functional
    functional.scaled_dot_product_attention = _fused_sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(*inputs)
    finally:
        functional.scaled_dot_product_attention = _SDPA
        model.train(was_training)
    return sum(size for _, size in saved.values())


def family_activation_bytes(cfg, size: int | None = None) -> int:
    """:func:`activation_bytes` of the task model of a composed depth config (``task=depth backbone=<family>
    finetune=full model.input_padding=null``: fp32, no checkpointing, VPD's head) built full size on the meta
    device, for one ``size`` x ``size`` image (default: the family's native resolution)."""
    from vpd_lightning.backbone.families import get_family

    size = size or get_family(cfg.backbone.family).native_size
    model = build_sd15_model(cfg)
    with torch.device("meta"):
        image, class_ids = torch.zeros(1, 3, size, size), torch.zeros(1, dtype=torch.long)
    return activation_bytes(model, image, class_ids)


# ------------------------------------------------------------------------------------ memory= presets per family
class MemoryPresetError(ConfigError):
    """A ``memory=`` preset cannot hold the configured family's training state and one image (a ``ValueError``)."""


@dataclass(frozen=True)
class PresetFit:
    """The per-GPU batch x accumulation a ``memory=`` preset runs for one family and task, and its bytes."""

    preset: str
    family: str
    task: str
    budget: int
    state: int  # parameters + buffers + gradients + optimizer state, counted
    activations_per_image: int
    batch: int
    accumulate: int

    @property
    def needed(self) -> int:
        return self.state + self.batch * self.activations_per_image


def preset_activations_per_image(memory: Any, family: str) -> int:
    """Activation bytes of one image of ``family`` at its native resolution under a preset: the preset's
    ``activations_gb_per_image`` -- a number, measured for SD-1.5 at 512^2 and scaled by the family's
    ``activation_scale``, or a mapping ``{family: GB}`` of figures measured per family (a family missing from it
    scales the mapping's ``sd15`` figure)."""
    from omegaconf import OmegaConf

    from vpd_lightning.backbone.families import get_family

    value = memory.activations_gb_per_image
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        if family in value:
            return int(float(value[family]) * GB)
        if "sd15" not in value:
            raise MemoryPresetError(
                f"memory.activations_gb_per_image of preset {memory.name} has no figure for {family} nor sd15"
            )
        value = value["sd15"]
    return int(float(value) * get_family(family).activation_scale * GB)


def fit_preset(cfg, model: nn.Module | None = None) -> PresetFit:
    """Fit a composed training config with a ``memory=`` preset to its budget: the exact training-state bytes of
    the full-size model of its family (built on the meta device unless ``model`` is given) plus the activations
    of ``batch`` images (:func:`preset_activations_per_image`) must fit ``memory.budget_gb``.

    The configured per-GPU batch is kept when it fits; otherwise the largest per-GPU batch dividing batch x
    accumulation that fits is taken, accumulation rising so that the product (the global batch) is unchanged.
    The preset's levers (fine-tuning mode, optimizer, dtypes) are never changed: when not even one image fits,
    :class:`MemoryPresetError` names the family, the preset, the bytes needed and the budget."""
    from omegaconf import OmegaConf

    memory, family = cfg.memory, OmegaConf.select(cfg, "backbone.family", default="sd15")
    budget = int(float(memory.budget_gb) * GB)
    batch, accumulate = int(cfg.data.batch_size), int(cfg.trainer.get("accumulate_grad_batches") or 1)
    model = model if model is not None else build_sd15_model(cfg)
    state = count_training_bytes(model, optimizer_kind(cfg.model.optimizer._target_)).total
    per_image = preset_activations_per_image(memory, family)
    total = batch * accumulate
    fit = dict(preset=str(memory.name), family=family, task=str(cfg.task_name), budget=budget, state=state)
    for b in range(min(batch, total), 0, -1):
        if total % b == 0 and state + b * per_image <= budget:
            return PresetFit(**fit, activations_per_image=per_image, batch=b, accumulate=total // b)
    finetune = OmegaConf.select(cfg, "finetune.mode", default="full")
    hint = "choose a preset for a larger GPU"
    if finetune == "full":
        lora = _lora_needed(cfg)
        hint += (
            f", or LoRA on this one: memory=gpu12 memory.budget_gb={memory.budget_gb} ({gb(lora)} GB at batch 1)"
            if lora <= budget
            else f" (LoRA with memory=gpu12's levers needs {gb(lora)} GB at batch 1 too)"
        )
    err = MemoryPresetError(
        f"memory={memory.name} does not fit backbone={family} for task={cfg.task_name}: the training state "
        f"({finetune} fine-tuning) is {gb(state)} GB and one {family} image at its native resolution needs "
        f"{gb(per_image)} GB of activations, {gb(state + per_image)} GB in all at per-GPU batch 1, over the "
        f"preset's budget of {memory.budget_gb} GB; {hint}"
    )
    err.state, err.activations_per_image = state, per_image
    raise err


def _lora_needed(cfg) -> int:
    """Bytes of ``cfg``'s family and task at per-GPU batch 1 with the levers of ``memory=gpu12`` (LoRA, frozen
    weights in bf16, checkpointing, AdamW; its activation figure)."""
    import copy

    from omegaconf import OmegaConf, open_dict

    from vpd_lightning.config import CONFIG_DIR

    root = Path(CONFIG_DIR)
    preset = OmegaConf.load(root / "memory" / "gpu12.yaml")
    lora = copy.deepcopy(cfg)
    with open_dict(lora):
        lora.finetune = OmegaConf.load(root / "finetune" / "lora.yaml")
        lora.backbone.merge_with(preset.backbone)
        lora.model.optimizer._target_ = preset.memory.optimizer
    state = count_training_bytes(build_sd15_model(lora), optimizer_kind(preset.memory.optimizer)).total
    return state + preset_activations_per_image(preset.memory, lora.backbone.family)


def apply_memory_preset(cfg) -> PresetFit | None:
    """:func:`fit_preset` for a training config with a ``memory=`` preset of a single task (others: ``None``),
    writing the fitted per-GPU batch and accumulation into ``data.batch_size`` and
    ``trainer.accumulate_grad_batches``."""
    from omegaconf import OmegaConf, open_dict

    memory = cfg.get("memory")
    if not memory or not memory.get("name") or OmegaConf.select(cfg, f"memory.batch.{cfg.task_name}") is None:
        return None
    fit = fit_preset(cfg)
    with open_dict(cfg):
        cfg.data.batch_size = fit.batch
        cfg.trainer.accumulate_grad_batches = fit.accumulate
    return fit
