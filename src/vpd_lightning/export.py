"""Rebuild task models from checkpoints alone, and export them as self-contained folders (offline).

**The model description ("vpd_config").** :func:`model_spec` describes a built task model in plain JSON-able
data: the task, the resolved Hydra ``model`` config (without the three built objects: ``backbone``,
``class_embeddings``, ``text_encoder``), the backbone options, the *configurations* of the UNet, the VAE and (for
referring) the CLIP text encoder (``unet.config`` ...), the shape of the class-embedding buffer, the class names,
what prediction needs to know about the training inputs (depth: the crop height; referring: the square image
size and the token budget), the tokenizer files (referring) and the resolved training config.
``vpd_lightning.train.build`` stores it on the model (``model.vpd_config``) and ``VPDTask.on_save_checkpoint``
writes it into every checkpoint (``checkpoint["vpd_config"]``). :func:`build_from_spec` rebuilds the model from
it with ``UNet2DConditionModel.from_config`` / ``AutoencoderKL.from_config`` / ``CLIPTextModel(config)`` and a
zero class-embedding buffer of the stored shape, so no Stable Diffusion weights, no text-encoder run and no data
set are needed; the weights then come from the checkpoint's ``state_dict`` (loaded strictly). The backbone
options include the fine-tuning configuration (``backbone.finetune``): a ``lora`` model gets its adapters injected
before the weights are loaded, and a state dict whose LoRA adapters do not match the rebuilt model (present in one,
absent in the other) is refused in one line before any weight is touched.

Checkpoints without a stored description (converted original checkpoints, older runs) are rebuilt from the
Hydra config instead (``task=...`` plus the training overrides; the backbone is then loaded from ``sd_path``).

**Export.** :func:`export_model` writes a folder in the ``save_pretrained`` spirit::

    config.json         task, model config, backbone options, UNet/VAE/text-encoder configs, class names, ...
    model.safetensors   the full state dict (class embeddings and the frozen text encoder included); LoRA
                        adapters added into the UNet weights unless ``merge_adapters=False``
    class_names.json    depth / segmentation
    tokenizer/          referring: ``tokenizer.save_pretrained``
    README.md           a model card: task, classes, usage, metrics, training config

:func:`load_exported` rebuilds the model from such a folder, offline; :func:`load_model` accepts either a
checkpoint file or an exported folder. ``python -m vpd_lightning.export ckpt_path=... output=<folder>`` exports a
checkpoint from the command line (it composes ``conf/predict.yaml``); ``push_to_hub=org/name`` (``private=true``)
uploads the folder to the Hugging Face Hub, and a hub id loads like a folder (:mod:`vpd_lightning.hub`).
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vpd_lightning.config import hydra_main
from vpd_lightning.utils.errors import ConfigError, MissingFileError, UserError, report_user_errors

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "DamagedCheckpointError",
    "WrongTaskError",
    "build_from_spec",
    "checkpoint_metrics",
    "checkpoint_task",
    "complete_checkpoints",
    "config_task",
    "cut_checkpoint",
    "export_checkpoint",
    "export_model",
    "format_bytes",
    "load_checkpoint",
    "load_exported",
    "load_model",
    "model_from_checkpoint",
    "model_spec",
    "read_checkpoint",
    "requested_task",
    "single_task_spec",
    "state_dict_task",
    "task_of",
    "tokenizer_from_spec",
]

log = logging.getLogger(__name__)

#: Version of the model description layout (``vpd_config`` / ``config.json``).
SPEC_VERSION = 1
#: ``format`` entry of an exported folder's ``config.json``.
EXPORT_FORMAT = "vpd_lightning.export"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

#: Built objects of the task constructors that the description replaces.
_BUILT_ARGS = ("backbone", "class_embeddings", "text_encoder")


class CheckpointError(UserError, ValueError):
    """A checkpoint or exported folder that cannot be read or does not fit; the message names the file."""


class WrongTaskError(CheckpointError):
    """The checkpoint holds a model of another task than the one asked for."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class DamagedCheckpointError(CheckpointError):
    """The checkpoint file is damaged or incomplete (e.g. its write was cut short); the message lists the
    complete checkpoints beside it."""


#: Class name of each task's LightningModule (``_task_classes`` without the imports).
_TASK_CLASS_NAMES = {
    "DepthEstimationTask": "depth",
    "SemanticSegmentationTask": "segmentation",
    "ReferringSegmentationTask": "referring",
    "MultiTaskModel": "multitask",
}


class TaskNotInCheckpointError(CheckpointError):
    """A task was asked of a multi-task checkpoint that does not hold it (or none was chosen); the message names
    the tasks it holds."""


# --------------------------------------------------------------------------------------------------- helpers
def _task_classes() -> dict[str, type]:
    from vpd_lightning.tasks import (
        DepthEstimationTask,
        MultiTaskModel,
        ReferringSegmentationTask,
        SemanticSegmentationTask,
    )

    return {
        "depth": DepthEstimationTask,
        "segmentation": SemanticSegmentationTask,
        "referring": ReferringSegmentationTask,
        "multitask": MultiTaskModel,
    }


def task_of(model: nn.Module) -> str:
    """``"depth"``, ``"segmentation"``, ``"referring"`` (or ``"multitask"``) for a task model; ``TypeError``
    otherwise."""
    for task, cls in _task_classes().items():
        if isinstance(model, cls):
            return task
    raise TypeError(f"not a VPD task model: {type(model).__name__}")


def state_dict_task(state_dict: Mapping[str, Any]) -> str | None:
    """The task whose modules a state dict holds (by its key prefixes), or ``None`` when it is not recognised."""
    keys = list(state_dict)
    if any(k.startswith("tasks.") for k in keys):
        return "multitask"
    if any(k.startswith("text_encoder.") for k in keys):
        return "referring"
    if any(k.startswith("neck.") for k in keys):
        return "segmentation"
    if any(k.startswith(("head.last_layer_depth", "head.out_layer")) for k in keys):
        return "depth"
    return None


def _plain(value: Any) -> Any:
    """JSON-able copy: mappings (OmegaConf ones resolved) -> dict, sequences -> list, dtypes/paths -> str."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, os.PathLike):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    return str(value)


def _component_config(module: nn.Module) -> dict:
    """A diffusers model's ``config`` without the bookkeeping entries (``_class_name``, ``_name_or_path`` ...)."""
    return {k: _plain(v) for k, v in dict(module.config).items() if not k.startswith("_")}


def backbone_options(backbone: nn.Module) -> dict:
    """Constructor options of a built :class:`DiffusionBackbone` (plus ``dtype``), read off the object."""
    return {
        "timestep": backbone.timestep,
        "attention": backbone.attention,
        "detach_attention": backbone.detach_attention,
        "scale_latents": backbone.scale_latents,
        "sample_posterior": backbone.sample_posterior,
        "add_noise": backbone.add_noise,
        # `finetune` says which parameters train (and that LoRA adapters must be injected before loading)
        "train_unet": backbone.finetune["mode"] != "frozen",
        "finetune": dict(backbone.finetune),
        "gradient_checkpointing": bool(getattr(backbone.unet, "is_gradient_checkpointing", False)),
        "attention_impl": backbone.attention_impl,
        # the Stable Diffusion family (sd15, sd21, sd21_base, sdxl): checked against the rebuilt UNet
        "family": getattr(backbone, "family", "sd15"),
        "dtype": str(backbone.unet.dtype).removeprefix("torch."),
    }


def component_configs(model: nn.Module) -> dict:
    """``{"unet": ..., "vae": ...[, "text_encoder": ...[, "text_encoder_2": ..., "pad_token_id_2": ...]]}``: what
    ``from_config`` needs to rebuild them (SDXL's referring model: both text encoders)."""
    configs = {"unet": _component_config(model.backbone.unet), "vae": _component_config(model.backbone.vae)}
    text_encoder = getattr(model, "text_encoder", None)
    if text_encoder is not None and hasattr(text_encoder, "text_encoder_2"):
        configs["text_encoder"] = _plain(text_encoder.text_encoder.config.to_dict())
        configs["text_encoder_2"] = _plain(text_encoder.text_encoder_2.config.to_dict())
        configs["pad_token_id_2"] = text_encoder.pad_token_id_2
    elif text_encoder is not None:
        configs["text_encoder"] = _plain(text_encoder.config.to_dict())
    return configs


def serialize_tokenizer(tokenizer) -> dict[str, str]:
    """The files ``tokenizer.save_pretrained`` writes, as ``{file name: text}``."""
    with tempfile.TemporaryDirectory(prefix="vpd_tokenizer_") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def tokenizer_from_spec(spec: Mapping[str, Any]):
    """The CLIP tokenizer stored in a model description (``tokenizer_files``); ``None`` when there is none."""
    files = spec.get("tokenizer_files")
    if not files:
        return None
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="vpd_tokenizer_") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        tokenizer = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    if tokenizer.model_max_length > 10_000:
        tokenizer.model_max_length = 77
    return tokenizer


def _resolved_config(cfg, exclude: tuple[str, ...] = ("hydra",)) -> dict | None:
    from omegaconf import OmegaConf

    keys = [k for k in cfg if k not in exclude]
    node = OmegaConf.masked_copy(cfg, keys)
    try:
        return _plain(OmegaConf.to_container(node, resolve=True))
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run: keep the unresolved values
        return _plain(OmegaConf.to_container(node, resolve=False))


#: Keys of ``conf/predict.yaml`` that are not part of a training configuration.
_PREDICT_KEYS = (
    "hydra", "input", "output", "sentence", "sentences", "scene", "flip", "save_npy", "batch_size", "device",
    "progress", "metrics", "depth_range", "merge_adapters", "dtype", "window_batch", "push_to_hub", "private",
)  # fmt: skip


def model_spec(cfg, model: nn.Module, tokenizer=None, include_train_config: bool = True) -> dict | None:
    """The description of ``model`` (built from the Hydra config ``cfg``) that rebuilds it without data or SD
    weights; ``None`` for a model that is not one of the three VPD tasks.

    ``tokenizer`` (referring): the tokenizer the model was trained with; loaded from ``data.tokenizer`` /
    ``sd_path`` when not given. Its files are stored in the description, so checkpoints are self-contained.
    """
    from omegaconf import OmegaConf

    try:
        task = task_of(model)
    except TypeError:
        return None
    if task == "multitask":
        return _multitask_spec(cfg, model, tokenizer, include_train_config)
    model_cfg = _plain(OmegaConf.to_container(cfg.model, resolve=True))
    for key in _BUILT_ARGS:
        model_cfg.pop(key, None)
    class_names, predict = _task_inputs(task, OmegaConf.select(cfg, "data", default=None), model_cfg, model)
    embeddings = getattr(model, "class_embeddings", None)
    spec = {
        "spec_version": SPEC_VERSION,
        "task": task,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model": model_cfg,
        "backbone": backbone_options(model.backbone),
        "components": component_configs(model),
        "class_embeddings_shape": list(embeddings.shape) if embeddings is not None else None,
        "class_names": _plain(class_names),
        "predict": predict,
    }
    if task == "referring":
        spec["tokenizer_files"] = _tokenizer_files(cfg, "data", model, tokenizer)
    if include_train_config:
        spec["train_config"] = _resolved_config(cfg, _PREDICT_KEYS)
    return spec


def _task_inputs(task: str, data_cfg, model_cfg: Mapping[str, Any], model: nn.Module) -> tuple[Any, dict]:
    """``(class names, what prediction needs to know of the training inputs)`` of one task model."""
    from omegaconf import OmegaConf

    class_names = OmegaConf.select(data_cfg, "class_names", default=None) if data_cfg is not None else None
    if class_names is None:
        class_names = model_cfg.get("class_names")
    predict: dict[str, Any] = {}
    if task == "depth":
        crop = OmegaConf.select(data_cfg, "crop_size", default=None) if data_cfg is not None else None
        predict["crop_height"] = int(crop[0]) if crop is not None else None
    if task == "referring":
        size = OmegaConf.select(data_cfg, "image_size", default=512) if data_cfg is not None else 512
        predict["image_size"] = int(size)
        predict["max_tokens"] = int(model.max_tokens)
    return _plain(class_names), predict


def _tokenizer_files(cfg, data_key: str, model: nn.Module, tokenizer=None) -> dict[str, str]:
    from omegaconf import OmegaConf

    if tokenizer is None:
        from vpd_lightning.backbone.loading import load_tokenizer

        source = OmegaConf.select(cfg, f"{data_key}.tokenizer", default=None) or OmegaConf.select(cfg, "sd_path")
        tokenizer = load_tokenizer(source, vocab_size=model.text_encoder.config.vocab_size)
    return serialize_tokenizer(tokenizer)


def _multitask_spec(cfg, model: nn.Module, tokenizer, include_train_config: bool) -> dict:
    """The description of a :class:`~vpd_lightning.tasks.MultiTaskModel`: the multi-task options and, per
    trained task, what :func:`model_spec` stores for a single-task model (``single_task_spec`` cuts one out)."""
    from omegaconf import OmegaConf

    tasks = list(model.task_names)
    model_cfg = _plain(OmegaConf.to_container(cfg.model, resolve=True))
    model_cfg.pop("backbone", None)
    for key in ("depth", "segmentation", "referring"):
        if key not in tasks:
            model_cfg.pop(key, None)
    names, predict, shapes = {}, {}, {}
    for task in tasks:
        sub_cfg = model_cfg[task]
        for key in _BUILT_ARGS:
            sub_cfg.pop(key, None)
        sub = model.tasks[task]
        names[task], predict[task] = _task_inputs(task, OmegaConf.select(cfg, f"data.{task}"), sub_cfg, sub)
        embeddings = getattr(sub, "class_embeddings", None)
        shapes[task] = list(embeddings.shape) if embeddings is not None else None
    spec = {
        "spec_version": SPEC_VERSION,
        "task": "multitask",
        "tasks": tasks,
        "attention": dict(model.attention),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model": model_cfg,
        "backbone": backbone_options(model.backbone),
        "components": component_configs(model),
        "class_embeddings_shape": shapes,
        "class_names": names,
        "predict": predict,
    }
    if "referring" in tasks:
        spec["tokenizer_files"] = _tokenizer_files(cfg, "data.referring", model.tasks["referring"], tokenizer)
    if include_train_config:
        spec["train_config"] = _resolved_config(cfg, _PREDICT_KEYS)
    return spec


def single_task_spec(spec: Mapping[str, Any], task: str, where: str = "the model") -> dict:
    """The single-task description of ``task`` inside a multi-task one (the backbone with that task's attention
    variant); :class:`TaskNotInCheckpointError` when the model does not hold ``task``."""
    tasks = list(spec.get("tasks") or [])
    if task not in tasks:
        raise TaskNotInCheckpointError(
            f"'{where}' holds no {task} model; its tasks are: {', '.join(tasks)} (use task=<one of them>)"
        )
    components = {k: v for k, v in spec["components"].items() if k != "text_encoder" or task == "referring"}
    backbone = {**spec["backbone"], "attention": spec["attention"][task]}
    classes = _task_classes()[task]
    single = {
        "spec_version": spec.get("spec_version", SPEC_VERSION),
        "task": task,
        "model_class": f"{classes.__module__}.{classes.__qualname__}",
        "model": copy.deepcopy(spec["model"][task]),
        "backbone": backbone,
        "components": components,
        "class_embeddings_shape": spec["class_embeddings_shape"][task],
        "class_names": spec["class_names"][task],
        "predict": spec["predict"][task],
        "cut_from": {"tasks": tasks},
    }
    if task == "referring":
        single["tokenizer_files"] = spec["tokenizer_files"]
    if spec.get("train_config") is not None:
        single["train_config"] = spec["train_config"]
    return single


def _single_from_multitask(
    spec: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], task: str, where: str
) -> nn.Module:
    """The single-task model of ``task`` with its weights from a multi-task state dict."""
    from vpd_lightning.tasks.multitask import task_state_dict

    single = single_task_spec(spec, task, where)
    model = build_from_spec(single)
    _load_weights(model, task_state_dict(state_dict, task), where)
    return _finish(model, single)


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """A task model with freshly initialised weights, built from a description (:func:`model_spec`) alone."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from hydra.utils import instantiate

    from vpd_lightning.backbone import DiffusionBackbone

    version = spec.get("spec_version", SPEC_VERSION)
    if version > SPEC_VERSION:
        raise CheckpointError(f"model description version {version} is newer than this code's ({SPEC_VERSION})")
    components = spec["components"]
    unet = UNet2DConditionModel.from_config(components["unet"])
    vae = AutoencoderKL.from_config(components["vae"])
    options = dict(spec["backbone"])
    dtype = getattr(torch, options.pop("dtype", "float32") or "float32")
    backbone = DiffusionBackbone(unet, vae, **options)
    if dtype != torch.float32:
        backbone.unet.to(dtype)
        backbone.vae.to(dtype)
    if spec.get("task") == "multitask":
        return _build_multitask(spec, backbone)
    built: dict[str, Any] = {"backbone": backbone}
    if spec.get("class_embeddings_shape") is not None:
        built["class_embeddings"] = torch.zeros(spec["class_embeddings_shape"])
    if "text_encoder" in components:
        from transformers import CLIPTextConfig, CLIPTextModel

        built["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_dict(dict(components["text_encoder"])))
        if "text_encoder_2" in components:
            from transformers import CLIPTextModelWithProjection

            from vpd_lightning.backbone.text import DualTextEncoder

            second = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(dict(components["text_encoder_2"])))
            built["text_encoder"] = DualTextEncoder(built["text_encoder"], second, components.get("pad_token_id_2", 0))
    factory = instantiate(copy.deepcopy(dict(spec["model"])), _partial_=True, _convert_="all")
    model = factory(**built)
    expected = spec.get("task")
    if expected is not None and task_of(model) != expected:
        raise CheckpointError(f"the description says task '{expected}' but builds a {type(model).__name__}")
    return model


def _build_multitask(spec: Mapping[str, Any], backbone: nn.Module) -> nn.Module:
    from hydra.utils import instantiate

    prebuilt: dict[str, dict[str, Any]] = {}
    for task in spec["tasks"]:
        built: dict[str, Any] = {}
        shape = (spec.get("class_embeddings_shape") or {}).get(task)
        if shape is not None:
            built["class_embeddings"] = torch.zeros(shape)
        if task == "referring":
            from transformers import CLIPTextConfig, CLIPTextModel

            built["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_dict(dict(spec["components"]["text_encoder"])))
        prebuilt[task] = built
    node = copy.deepcopy(dict(spec["model"]))
    node["_recursive_"] = False
    return instantiate(node, _partial_=True)(backbone=backbone, prebuilt=prebuilt)


def _load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    from vpd_lightning.backbone.finetune import AdapterMismatchError, check_adapters

    try:
        check_adapters(state_dict.keys(), model, where)
    except AdapterMismatchError as err:
        raise CheckpointError(str(err)) from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in '{where}' do not fit the model rebuilt from its configuration: {err}"
        ) from err


def _finish(model: nn.Module, spec: dict) -> nn.Module:
    model.vpd_config = spec
    model.eval()
    return model


# -------------------------------------------------------------------------------------------- checkpoints
def _torch_load(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)  # legacy (non-zip) format


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _is_complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole torch zip archive (its central directory, at the end of the file, is read
    and names a pickle): what a write cut short by a kill or a full disk lacks. Nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def complete_checkpoints(folder: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Path]:
    """The ``*.ckpt`` files of ``folder`` that are complete (newest first); temporary files are left out."""
    folder = Path(folder)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = [
        p
        for p in folder.glob("*.ckpt")
        if not p.name.startswith(".") and p.is_file() and p.resolve() != skip and _is_complete_checkpoint(p)
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def damaged_checkpoint_error(path: str | os.PathLike, err: BaseException) -> DamagedCheckpointError:
    """The error for a checkpoint file torch cannot read: which file, that it is damaged or incomplete, and
    which checkpoints in the same folder are complete."""
    path = Path(path)
    reason = str(err).split(". ")[0].strip() or type(err).__name__  # torch adds a paragraph of speculation
    size = path.stat().st_size if path.is_file() else 0
    try:
        with path.open("rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"
    except OSError:
        zip_start = False
    if zip_start and not _is_complete_checkpoint(path):
        lines = [
            f"checkpoint '{path}' is damaged or incomplete ({format_bytes(size)}; the zip archive has no central "
            "directory: the file ends early).",
            "Its write was most likely cut short (a kill, a crash or a full disk while saving).",
        ]
    else:
        lines = [
            f"checkpoint '{path}' could not be read: damaged, or not a torch file ({format_bytes(size)}; {reason})."
        ]
    others = complete_checkpoints(path.parent, exclude=path)
    if others:
        lines.append(f"Complete checkpoints in '{path.parent}' (newest first; use one with ckpt_path=...):")
        for other in others:
            stat = other.stat()
            when = datetime.datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M")
            lines.append(f"  {other}  ({format_bytes(stat.st_size)}, {when})")
    else:
        lines.append(f"No other complete checkpoint in '{path.parent}'.")
    return DamagedCheckpointError("\n".join(lines))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a Lightning checkpoint file of this framework; clear errors naming the file.

    The file is memory-mapped (``mmap=True``), so optimizer states are never read into memory. Tries
    ``weights_only=True`` first; a checkpoint whose pickle holds other objects (e.g. an optimizer
    partial) is loaded with ``weights_only=False``, which trusts the file (as Lightning does).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint '{path}' does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' is not a file (an exported folder holds {CONFIG_NAME})")
    try:
        checkpoint = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise damaged_checkpoint_error(path, err) from err
        try:
            checkpoint = _torch_load(path, weights_only=False)
        except Exception as err2:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"checkpoint '{path}' could not be read: {err2}") from err2
    except Exception as err:  # noqa: BLE001 - truncated zip, I/O errors ...
        raise damaged_checkpoint_error(path, err) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(
            f"checkpoint '{path}' holds no 'state_dict': not a Lightning checkpoint of vpd_lightning (an original "
            "VPD checkpoint must be converted first: vpd_lightning.convert)"
        )
    return checkpoint


def checkpoint_metrics(checkpoint: Mapping[str, Any]) -> dict[str, float]:
    """``{monitor: best score}`` of the ``ModelCheckpoint`` callbacks recorded in a Lightning checkpoint."""
    metrics = {}
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, Mapping):
            continue
        score, monitor = state.get("best_model_score"), state.get("monitor")
        if score is not None and monitor:
            value = float(score)
            if math.isfinite(value):
                metrics[f"best {monitor}"] = value
    return metrics


def config_task(cfg) -> str | None:
    """The task a Hydra config builds (from ``model._target_``, without importing the task classes), ``None``
    when it names no VPD task."""
    from omegaconf import OmegaConf

    target = OmegaConf.select(cfg, "model._target_", default="") or ""
    return next((task for name, task in _TASK_CLASS_NAMES.items() if target.endswith(name)), None)


def checkpoint_task(checkpoint: Mapping[str, Any]) -> str | None:
    """The task of a checkpoint dict: the stored model description's, else guessed from the state dict."""
    spec = checkpoint.get("vpd_config")
    if spec and spec.get("task"):
        return spec["task"]
    return state_dict_task(checkpoint.get("state_dict") or {})


def _check_task(found: str | None, wanted: str | None, where: str) -> None:
    if wanted is not None and found is not None and found != wanted:
        raise WrongTaskError(
            f"'{where}' holds a {found} model, but task={wanted} was asked for (use task={found}, or leave task "
            "out to take the checkpoint's)"
        )


def _build_from_cfg(cfg, state_dict: Mapping[str, torch.Tensor], where: str) -> tuple[nn.Module, dict]:
    """Rebuild a model for a checkpoint without ``vpd_config`` from the Hydra config (needs ``sd_path``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    node = copy.deepcopy(cfg)
    built = {}
    if "class_embeddings" in state_dict:
        with open_dict(node.model):
            node.model.pop("class_embeddings", None)
        built["class_embeddings"] = torch.zeros(state_dict["class_embeddings"].shape)
    model = instantiate(node.model, _partial_=True, _convert_="all")(**built)
    tokenizer = None
    if task_of(model) == "referring":
        from vpd_lightning.backbone.loading import load_tokenizer

        source = OmegaConf.select(cfg, "data.tokenizer", default=None) or OmegaConf.select(cfg, "sd_path")
        tokenizer = load_tokenizer(source, vocab_size=model.text_encoder.config.vocab_size)
    _load_weights(model, state_dict, where)
    return model, model_spec(cfg, model, tokenizer, include_train_config=False)


def model_from_checkpoint(
    checkpoint: Mapping[str, Any], where: str = "checkpoint", task: str | None = None, cfg=None
) -> nn.Module:
    """The model of a checkpoint dict (:func:`read_checkpoint`), in eval mode, with ``vpd_config`` set."""
    state_dict = checkpoint["state_dict"]
    spec = checkpoint.get("vpd_config")
    found = checkpoint_task(checkpoint)
    if found == "multitask" and spec and task not in (None, "multitask"):
        return _single_from_multitask(spec, state_dict, task, where)
    _check_task(found, task, where)
    if spec:
        model = build_from_spec(spec)
        _load_weights(model, state_dict, where)
        return _finish(model, dict(spec))
    if cfg is None:
        raise CheckpointError(
            f"checkpoint '{where}' stores no model configuration (vpd_config; e.g. a converted original checkpoint): "
            "give the Hydra config it was trained with, e.g. `python -m vpd_lightning.predict task=<task> "
            "sd_path=<SD-1.5> [training overrides] ckpt_path=...`, or `load_checkpoint(path, cfg=cfg)`"
        )
    _check_task(found, config_task(cfg), where)
    model, spec = _build_from_cfg(cfg, state_dict, where)
    return _finish(model, spec)


def load_checkpoint(path: str | os.PathLike, task: str | None = None, cfg=None) -> nn.Module:
    """Rebuild the model of a Lightning checkpoint file (see the module docstring)."""
    return model_from_checkpoint(read_checkpoint(path), str(path), task, cfg)


def load_model(path: str | os.PathLike, task: str | None = None, cfg=None, **hub: Any) -> nn.Module:
    """A checkpoint file, an exported folder or the hub id of one (``org/name``) -> the model (eval mode, on the
    CPU, ``vpd_config`` set). ``hub``: ``revision``, ``cache_dir``, ``local_files_only``, ``token`` of the
    download (:func:`vpd_lightning.hub.download_model`)."""
    from vpd_lightning.hub import resolve_model_path

    path = resolve_model_path(path, **hub)
    if Path(path).expanduser().is_dir():
        return load_exported(path, task)
    return load_checkpoint(path, task, cfg)


def requested_task(cfg) -> str | None:
    """The task asked for on the command line (``task=`` or ``experiment=``), ``None`` when left to the default."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    keys = {o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task}
    if keys & {"task", "experiment"}:
        return hydra_cfg.runtime.choices.get("task")
    return None


# ------------------------------------------------------------------------------------------------ export
def _safetensors_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared or strided ones)."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen or not tensor.is_contiguous():
            tensor = tensor.clone().contiguous()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    return tensors


def _prepare_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(err.errno, f"output folder '{folder}' is not writable ({err.strerror or err})") from err
    return folder


#: The hub's ``pipeline_tag`` of each task (model-card metadata).
_PIPELINE_TAGS = {"depth": "depth-estimation", "segmentation": "image-segmentation", "referring": "image-segmentation"}


def _model_card(
    config: dict, metrics: Mapping[str, float] | None, train_config: Any, n_params: int, repo_id: str | None = None
) -> str:
    task = config["task"]
    if task == "multitask":
        return _multitask_card(config, metrics, train_config, n_params)
    what = {
        "depth": "monocular depth estimation (metres)",
        "segmentation": "semantic segmentation",
        "referring": "referring image segmentation (a sentence selects the object)",
    }[task]
    names = config.get("class_names") or []
    unet = config["components"]["unet"]
    where = repo_id or "<this folder>"
    lines = [
        "---",  # the Hugging Face Hub's metadata header
        "library_name: vpd_lightning",
        f"pipeline_tag: {_PIPELINE_TAGS.get(task, 'image-segmentation')}",
        f"tags: [vpd, stable-diffusion, {task}]",
        "---",
        "",
        f"# VPD {task} model",
        "",
        f"VPD (Zhao et al., ICCV 2023) for {what}, exported by `vpd_lightning`: a Stable-Diffusion-shaped UNet "
        "(one pass at a fixed timestep) on the frozen VAE encoder's latent, conditioned on text through a "
        "text adapter, with a light task head.",
        "",
        f"- task: `{task}` (`{config['model_class']}`)",
        f"- backbone family: `{config['backbone'].get('family', 'sd15')}`",
        f"- parameters: {n_params / 1e6:.2f} M",
        f"- UNet: block_out_channels {unet.get('block_out_channels')}, cross_attention_dim "
        f"{unet.get('cross_attention_dim')}; backbone attention maps: `{config['backbone']['attention']}`, "
        f"timestep {config['backbone']['timestep']}",
    ]
    if names:
        kind = "scene classes (the depth prompt)" if task == "depth" else "classes (label = row index)"
        shown = ", ".join(str(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        lines.append(f"- {len(names)} {kind}: {shown} (`class_names.json`)")
    finetune = config["backbone"].get("finetune") or {"mode": "full"}
    lines.append(f"- fine-tuning: {_describe_finetune(finetune)}")
    predict = config.get("predict") or {}
    if task == "depth" and predict.get("crop_height"):
        lines.append(f"- trained on {predict['crop_height']}-pixel-high crops")
    if task == "referring":
        size, tokens = predict.get("image_size"), predict.get("max_tokens")
        lines.append(f"- input squashed to {size}x{size} px; sentences of {tokens} tokens")
    lines += [
        "",
        "## Files",
        "",
        f"- `{CONFIG_NAME}`: task, model config, backbone options and the UNet/VAE"
        + ("/text-encoder" if task == "referring" else "")
        + " configurations (the model is rebuilt with `from_config`, no Stable Diffusion weights needed)",
        f"- `{WEIGHTS_NAME}`: all weights (safetensors)",
    ]
    if names:
        lines.append("- `class_names.json`: the class names, in embedding-row order")
    if task == "referring":
        lines.append("- `tokenizer/`: the CLIP tokenizer")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from vpd_lightning.predict import Predictor",
        "",
        f'predictor = Predictor.from_pretrained("{where}")',
        {
            "depth": 'depth = predictor("room.jpg")  # float32 [H, W], metres',
            "segmentation": 'label = predictor("scene.jpg")  # int64 [H, W], class index',
            "referring": 'mask = predictor("photo.jpg", sentence="the man on the left")  # bool [H, W]',
        }[task],
        "```",
        "",
        "```bash",
        f"python -m vpd_lightning.predict ckpt_path={where} input=<image, folder or glob> output=<folder>"
        + (' sentence="..."' if task == "referring" else ""),
        "```",
        "",
        f'`vpd_lightning.export.load_model("{where}")` gives the LightningModule itself.',
        "",
    ]
    return "\n".join(
        lines + _card_metrics_and_config(metrics, train_config, "the model was not built by `vpd_lightning.train`")
    )


def _card_metrics_and_config(metrics: Mapping[str, float] | None, train_config: Any, why_missing: str = "") -> list:
    """The model card's "Metrics" and "Training configuration" sections (lines, ending with an empty one)."""
    from omegaconf import OmegaConf

    lines = ["## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {float(v):.4f} |" for k, v in metrics.items()]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Training configuration", ""]
    if train_config:
        lines += ["```yaml", OmegaConf.to_yaml(OmegaConf.create(_plain(train_config))).rstrip(), "```"]
    else:
        lines.append(f"Not recorded ({why_missing})." if why_missing else "Not recorded.")
    return lines + [""]


def _multitask_card(config: dict, metrics: Mapping[str, float] | None, train_config: Any, n_params: int) -> str:
    tasks = list(config["tasks"])
    unet = config["components"]["unet"]
    lines = [
        f"# VPD multi-task model ({', '.join(tasks)})",
        "",
        "VPD (Zhao et al., ICCV 2023) trained jointly for several tasks on ONE Stable-Diffusion-shaped UNet, "
        "exported by `vpd_lightning`: the UNet and the frozen VAE encoder are shared; each task has its text "
        "context, text adapter, attention-map variant and head.",
        "",
        "- tasks: " + ", ".join(f"`{t}` (attention maps `{config['attention'][t]}`)" for t in tasks),
        f"- parameters: {n_params / 1e6:.2f} M",
        f"- UNet: block_out_channels {unet.get('block_out_channels')}, cross_attention_dim "
        f"{unet.get('cross_attention_dim')}; timestep {config['backbone']['timestep']}",
        f"- fine-tuning: {_describe_finetune(config['backbone'].get('finetune') or {'mode': 'full'})}",
        "",
        "## Usage",
        "",
        "```python",
        "from vpd_lightning.predict import Predictor",
        "",
    ]
    examples = {
        "depth": 'depth = Predictor.from_pretrained("<this folder>", task="depth")("room.jpg")  # metres',
        "segmentation": 'label = Predictor.from_pretrained("<this folder>", task="segmentation")("scene.jpg")',
        "referring": 'mask = Predictor.from_pretrained("<this folder>", task="referring")("a.jpg", sentence="the dog")',
    }
    lines += [examples[t] for t in tasks]
    lines += [
        "```",
        "",
        "```bash",
        "python -m vpd_lightning.predict ckpt_path=<this folder> task=<task> input=<images> output=<folder>",
        "```",
        "",
    ]
    return "\n".join(lines + _card_metrics_and_config(metrics, train_config))


def _export_state_dict(model: nn.Module, config: dict, merge_adapters: bool) -> dict[str, torch.Tensor]:
    """The weights to export; with ``merge_adapters``, LoRA adapters added into the UNet weights (the UNet is then a
    plain one, and ``config["backbone"]["finetune"]`` says ``merged: true`` so no adapter is injected on reload)."""
    from vpd_lightning.backbone.finetune import has_adapters, merged_state_dict

    state_dict = model.state_dict()
    unet = model.backbone.unet
    if not (merge_adapters and has_adapters(unet)):
        return state_dict
    prefix = "backbone.unet."
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    state_dict.update({prefix + k: v for k, v in merged_state_dict(unet).items()})
    config["backbone"]["finetune"] = {**config["backbone"]["finetune"], "merged": True}
    return state_dict


def _describe_finetune(finetune: Mapping[str, Any]) -> str:
    """One line of the model card: which UNet parameters were fine-tuned."""
    from vpd_lightning.backbone.finetune import lora_targets

    mode = finetune.get("mode", "full")
    if mode == "lora":
        where = "added into the UNet weights" if finetune.get("merged") else "kept as separate weights"
        targets = ", ".join(lora_targets(finetune))
        return f"`lora` (rank {finetune.get('rank')}, alpha {finetune.get('alpha')} on {targets}; adapters {where})"
    if mode == "partial":
        return f"`partial` (trained UNet blocks: {', '.join(finetune.get('train_blocks', []))})"
    return {"full": "`full` (the whole UNet)", "frozen": "`frozen` (UNet as pretrained)"}.get(mode, f"`{mode}`")


def export_model(
    model: nn.Module,
    folder: str | os.PathLike,
    metrics: Mapping[str, float] | None = None,
    train_config: Any = None,
    merge_adapters: bool = True,
    repo_id: str | None = None,
) -> Path:
    """Write ``model`` as a self-contained folder (see the module docstring); return the folder.

    ``model`` needs its description (``model.vpd_config``): set by ``vpd_lightning.train.build``, by
    :func:`load_checkpoint` / :func:`load_exported`, or by hand with :func:`model_spec`. ``train_config``
    defaults to the one in the description. A model with LoRA adapters (``finetune=lora``) is exported with the
    adapters added into the UNet weights (a plain UNet, as fast as the original); ``merge_adapters=False`` keeps
    them as separate weights (``lora_A``/``lora_B`` entries; the reloaded model injects them again). ``model``
    itself is never modified. ``repo_id``: the hub id the folder is meant for (named in the model card's usage).
    """
    from safetensors.torch import save_file

    spec = getattr(model, "vpd_config", None)
    if not spec:
        raise ValueError(
            "the model has no description (model.vpd_config): build it with vpd_lightning.train.build, load it "
            "with vpd_lightning.export.load_checkpoint / load_exported, or set "
            "model.vpd_config = vpd_lightning.export.model_spec(cfg, model)"
        )
    folder = _prepare_folder(Path(folder).expanduser())
    task = task_of(model)
    config = {k: v for k, v in spec.items() if k not in ("tokenizer_files", "train_config")}
    config.update(
        {
            "format": EXPORT_FORMAT,
            "spec_version": SPEC_VERSION,
            "task": task,
            "backbone": backbone_options(model.backbone),
            "components": component_configs(model),
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "tokenizer": "tokenizer" if _has_referring(config) else None,
        }
    )
    embeddings = getattr(model, "class_embeddings", None)
    if embeddings is not None:
        config["class_embeddings_shape"] = list(embeddings.shape)
    state_dict = _safetensors_dict(_export_state_dict(model, config, merge_adapters))
    save_file(state_dict, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "task": task})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder / WEIGHTS_NAME, 0o666 & ~umask)  # safetensors writes 0600; an export is meant to be shared
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if config.get("class_names"):
        (folder / "class_names.json").write_text(json.dumps(config["class_names"], indent=1) + "\n", encoding="utf-8")
    if _has_referring(config):
        tokenizer = tokenizer_from_spec(spec)
        if tokenizer is None:
            raise ValueError("a referring model's description must hold its tokenizer (tokenizer_files)")
        tokenizer.save_pretrained(str(folder / "tokenizer"))
    if train_config is None:
        train_config = spec.get("train_config")
    n_params = sum(p.numel() for p in model.parameters())
    (folder / "README.md").write_text(_model_card(config, metrics, train_config, n_params, repo_id), encoding="utf-8")
    return folder


def _has_referring(config: Mapping[str, Any]) -> bool:
    return config.get("task") == "referring" or "referring" in (config.get("tasks") or [])


def load_exported(folder: str | os.PathLike, task: str | None = None) -> nn.Module:
    """Rebuild the model of an exported folder (:func:`export_model`) offline; eval mode, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"'{folder}' is not an exported vpd_lightning model: it has no {CONFIG_NAME}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"'{config_file}' could not be read: {err}") from err
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"'{config_file}' is not the configuration of an exported vpd_lightning model")
    multitask = config.get("task") == "multitask" and task not in (None, "multitask")
    if not multitask:
        _check_task(config.get("task"), task, str(folder))
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"'{folder}' has no {WEIGHTS_NAME}")
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"'{weights}' could not be read (corrupt?): {err}") from err
    spec = {k: v for k, v in config.items() if k not in ("format", "metrics", "tokenizer")}
    if config.get("tokenizer"):
        tokenizer_dir = folder / config["tokenizer"]
        if not tokenizer_dir.is_dir():
            raise CheckpointError(f"'{folder}' has no {config['tokenizer']}/ folder (the referring tokenizer)")
        spec["tokenizer_files"] = {
            p.name: p.read_text(encoding="utf-8") for p in sorted(tokenizer_dir.iterdir()) if p.is_file()
        }
    if multitask:
        return _single_from_multitask(spec, state_dict, task, str(folder))
    model = build_from_spec(spec)
    _load_weights(model, state_dict, str(weights))
    return _finish(model, spec)


def cut_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, task: str) -> Path:
    """Write the single-task checkpoint of ``task`` cut from the multi-task checkpoint ``src`` to ``dst``.

    The result holds the shared backbone, ``task``'s head, text adapter and class embeddings (other tasks and the
    uncertainty weights left out) and its single-task description: ``evaluate task=<task>``, ``predict`` and
    ``export`` take it like a checkpoint of a single-task run (it does not resume a fit: no optimiser state).
    The weights are checked by rebuilding the single-task model and loading them strictly before ``dst`` is
    written (atomically).
    """
    from vpd_lightning.tasks.multitask import task_state_dict

    checkpoint = read_checkpoint(src)
    spec = checkpoint.get("vpd_config")
    found = checkpoint_task(checkpoint)
    if found != "multitask" or not spec:
        raise CheckpointError(f"'{src}' holds a {found or 'unrecognised'} model, not a multi-task one: nothing to cut")
    single = single_task_spec(spec, task, str(src))
    state_dict = task_state_dict(checkpoint["state_dict"], task)
    _load_weights(build_from_spec(single), state_dict, str(src))
    out = {
        "state_dict": {k: v.clone() for k, v in state_dict.items()},
        "vpd_config": single,
        "pytorch-lightning_version": checkpoint.get("pytorch-lightning_version"),
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
    }
    dst = Path(dst).expanduser()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        torch.save(out, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def export_checkpoint(cfg) -> Path:
    """``python -m vpd_lightning.export ckpt_path=<.ckpt> output=<folder> [task=...] [metrics=<json file>]
    [push_to_hub=org/name [private=true]]`` (with ``push_to_hub`` and no ``output``: a temporary folder).

    An ``output`` ending in ``.ckpt`` cuts a multi-task checkpoint down to the single-task one of ``task=...``
    (:func:`cut_checkpoint`) instead of exporting a folder."""
    from omegaconf import OmegaConf, open_dict

    repo_id = cfg.get("push_to_hub")
    no_output = OmegaConf.is_missing(cfg, "output") or not cfg.get("output")
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path") or (no_output and not repo_id):
        raise ConfigError("export needs ckpt_path=<checkpoint file> and output=<folder> (or push_to_hub=org/name)")
    if not no_output and str(cfg.output).endswith(".ckpt"):
        if repo_id:
            raise ConfigError("push_to_hub uploads an exported folder: give output=<folder>, not a .ckpt file")
        task = requested_task(cfg)
        if task in (None, "multitask"):
            raise ConfigError("output=<file>.ckpt cuts a multi-task checkpoint down to one task: give task=<task>")
        path = cut_checkpoint(str(cfg.ckpt_path), str(cfg.output), task)
        print(f"cut the {task} model of '{cfg.ckpt_path}' into '{path}'")
        return path
    if repo_id:
        from vpd_lightning.hub import check_can_push, push_to_hub

        token = check_can_push(str(repo_id))  # offline or no token: say so before writing anything
        if no_output:
            with tempfile.TemporaryDirectory(prefix="vpd-export-") as tmp:
                with open_dict(cfg):
                    cfg.output = str(Path(tmp) / "model")
                return _export_and_push(cfg, str(repo_id), token, push_to_hub)
        return _export_and_push(cfg, str(repo_id), token, push_to_hub)
    return _export(cfg)


def _export_and_push(cfg, repo_id: str, token: str, push) -> Path:
    folder = _export(cfg, repo_id)
    info = push(folder, repo_id, private=bool(cfg.get("private", False)), token=token)
    print(f"uploaded '{folder}' to the hub: {getattr(info, 'commit_url', None) or repo_id}")
    return folder


def _export(cfg, repo_id: str | None = None) -> Path:
    folder = Path(cfg.output).expanduser()
    created = not folder.exists()
    _prepare_folder(folder)  # fail before loading anything
    path = str(cfg.ckpt_path)
    try:
        if Path(path).expanduser().is_dir():
            model, metrics = load_exported(path, requested_task(cfg)), {}
        else:
            checkpoint = read_checkpoint(path)
            model = model_from_checkpoint(checkpoint, path, requested_task(cfg), cfg)
            metrics = checkpoint_metrics(checkpoint)
        if cfg.get("metrics"):
            if not Path(cfg.metrics).is_file():
                raise MissingFileError(f"metrics: file '{cfg.metrics}' does not exist (a JSON file of metrics)")
            metrics.update(json.loads(Path(cfg.metrics).read_text(encoding="utf-8")))
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # leave no empty output folder behind
        raise
    export_model(model, folder, metrics=metrics, merge_adapters=bool(cfg.get("merge_adapters", True)), repo_id=repo_id)
    print(f"exported the {task_of(model)} model of '{path}' to '{folder}'")
    return folder


@hydra_main("predict")
@report_user_errors
def main(cfg) -> None:
    export_checkpoint(cfg)


if __name__ == "__main__":
    main()
