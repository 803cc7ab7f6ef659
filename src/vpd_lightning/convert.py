"""Convert VPD's released task checkpoints (original key layout) into this framework's Lightning checkpoints.

VPD ships one checkpoint per task, each in its own layout:

- depth (``vpd_depth_480x480.pth``): ``{'model': state_dict, ...}``; the backbone, text adapter, class embeddings
  and the first head layers under ``encoder.`` (``encoder.unet.unet.diffusion_model.*`` is the ldm UNet, without
  its ``out.*`` head), the deconvolution decoder under ``decoder.`` and ``last_layer_depth.*``;
- semantic segmentation (mmcv): ``{'meta', 'state_dict'[, 'optimizer']}``; ``unet.unet.diffusion_model.*``,
  ``encoder_vq.*``, ``text_adapter.*``, ``gamma``, ``class_embeddings``, ``neck.*``, ``decode_head.*`` and the
  leftover DDPM schedule buffers of ldm's ``LatentDiffusion`` (``sd_model.betas`` ...);
- referring segmentation: ``{'model': state_dict, ...}``; ``unet.unet.diffusion_model.*``, ``encoder_vq.*``,
  ``text_adapter.*``, ``gamma`` and LAVT's decoder under ``classifier.``.

The ldm UNet and VAE keys are renamed to diffusers' layout by diffusers' own single-file converters
(:func:`diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint` / ``convert_ldm_vae_checkpoint``). Those
converters skip what they do not understand, so every source key is traced through them: the converters run on
meta-device stand-ins and each output is followed back to the stand-in it came from. Nothing is dropped
silently: a :class:`ConversionReport` lists every source key as mapped, dropped (with the reason) or
unexpected, every target key that keeps the target model's value (with the reason), and every shape mismatch;
unexpected source keys, missing target keys and shape mismatches raise :class:`ConversionError` (a
``ValueError``) naming them.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vpd_lightning.utils.errors import UserError

__all__ = [
    "DDPM_BUFFERS",
    "TASKS",
    "ConversionError",
    "ConversionReport",
    "convert_checkpoint",
    "convert_vpd_state_dict",
    "detect_task",
    "lightning_checkpoint",
    "load_original_state_dict",
    "original_class_embeddings",
    "save_lightning_checkpoint",
]

log = logging.getLogger(__name__)

#: The three VPD tasks, by the names the framework's configs use (``task=...``).
TASKS = ("depth", "segmentation", "referring")

#: Buffers ldm's ``DDPM.register_schedule`` adds to ``LatentDiffusion``; VPD's segmentation model keeps the
#: ``sd_model`` object (its UNet and VAE moved out), so they are saved with it. VPD never samples: dropped.
DDPM_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)

_LDM_UNET = "model.diffusion_model."  # the prefix diffusers' converter expects
_LDM_VAE = "first_stage_model."


@dataclass(frozen=True)
class _Layout:
    """Where each part of the model sits in one task's original checkpoint."""

    unet: str  # prefix of the ldm UNet (``...diffusion_model.``)
    vae: str  # prefix of ldm's AutoencoderKL (``encoder_vq.``)
    ldm: str  # prefix of the leftover LatentDiffusion object (``sd_model.``)
    renames: tuple[tuple[str, str], ...]  # (source, target): a prefix when it ends with '.', else one key
    markers: tuple[str, ...]  # key prefixes that identify the task


_LAYOUTS: dict[str, _Layout] = {
    "depth": _Layout(
        unet="encoder.unet.unet.diffusion_model.",
        vae="encoder.encoder_vq.",
        ldm="encoder.sd_model.",
        renames=(
            ("encoder.text_adapter.", "text_adapter."),
            ("encoder.gamma", "text_adapter.gamma"),
            ("encoder.class_embeddings", "class_embeddings"),
            ("encoder.layer1.", "head.layer1."),
            ("encoder.layer2.", "head.layer2."),
            ("encoder.out_layer.", "head.out_layer."),
            ("decoder.", "head.decoder."),
            ("last_layer_depth.", "head.last_layer_depth."),
        ),
        markers=("encoder.unet.", "encoder.encoder_vq.", "decoder.deconv_layers.", "last_layer_depth."),
    ),
    "segmentation": _Layout(
        unet="unet.unet.diffusion_model.",
        vae="encoder_vq.",
        ldm="sd_model.",
        renames=(
            ("text_adapter.", "text_adapter."),
            ("gamma", "text_adapter.gamma"),
            ("class_embeddings", "class_embeddings"),
            ("neck.", "neck."),
            ("decode_head.", "head."),
        ),
        markers=("decode_head.", "neck."),
    ),
    "referring": _Layout(
        unet="unet.unet.diffusion_model.",
        vae="encoder_vq.",
        ldm="sd_model.",
        renames=(
            ("text_adapter.", "text_adapter."),
            ("gamma", "text_adapter.gamma"),
            ("classifier.", "head."),
        ),
        markers=("classifier.",),
    ),
}

#: Reason recorded for target keys that keep the target model's own value.
KEPT_ABSENT = "kept from the target (absent in source)"


# ----------------------------------------------------------------------------------------------------- report
@dataclass
class ConversionReport:
    """What happened to every key.

    Attributes:
        task: the VPD task of the checkpoint.
        source: the file converted (``None`` for an in-memory state dict).
        mapped: ``(source key, target key)`` for every converted tensor.
        dropped: ``(source key, reason)`` for source tensors deliberately left out.
        kept_from_target: ``(target key, reason)`` for target tensors that keep the target model's value.
        unexpected: source keys that were not understood (an error unless ``allow_unexpected``).
        missing: target keys that nothing in the source provides (an error unless ``allow_missing``).
        mismatched: ``(source key, target key, source shape, target shape)`` (always an error).
        notes: anything else worth knowing (prefixes stripped, ...).
    """

    task: str
    source: str | None = None
    mapped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    kept_from_target: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No unexpected, missing or mismatched keys."""
        return not (self.unexpected or self.missing or self.mismatched)

    def problems(self, allow_unexpected: bool = False, allow_missing: bool = False, limit: int = 30) -> list[str]:
        """One line per kind of error, naming the keys (at most ``limit`` per kind)."""

        def names(items: list[str]) -> str:
            shown = ", ".join(items[:limit])
            return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")

        lines = []
        if self.unexpected and not allow_unexpected:
            lines.append(f"{len(self.unexpected)} unexpected key(s) in the checkpoint: {names(self.unexpected)}")
        if self.missing and not allow_missing:
            lines.append(f"{len(self.missing)} model key(s) missing from the checkpoint: {names(self.missing)}")
        if self.mismatched:
            described = [f"{s} {list(ss)} -> {t} {list(ts)}" for s, t, ss, ts in self.mismatched]
            lines.append(
                f"{len(self.mismatched)} shape mismatch(es) (checkpoint -> model): {names(described)}; "
                "was the model built with the same configuration (number of classes, tokens, Stable Diffusion "
                "version, head widths) as the checkpoint?"
            )
        return lines

    def summary(self) -> str:
        """Counts, then every key that was not simply mapped, with its reason."""
        lines = [f"VPD {self.task} checkpoint" + (f" '{self.source}'" if self.source else "")]
        lines.append(f"  mapped: {len(self.mapped)} tensors")
        lines.append(f"  dropped: {len(self.dropped)}")
        lines += [f"    {key}: {reason}" for key, reason in self.dropped]
        lines.append(f"  kept from the target model: {len(self.kept_from_target)}")
        lines += [f"    {key}: {reason}" for key, reason in self.kept_from_target]
        lines.append(f"  unexpected (not understood): {len(self.unexpected)}")
        lines += [f"    {key}" for key in self.unexpected]
        lines.append(f"  missing (nothing in the checkpoint): {len(self.missing)}")
        lines += [f"    {key}" for key in self.missing]
        lines.append(f"  shape mismatches: {len(self.mismatched)}")
        lines += [f"    {s} {list(ss)} -> {t} {list(ts)}" for s, t, ss, ts in self.mismatched]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self, include_mapped: bool = True) -> dict[str, Any]:
        """Plain lists and strings (safe for ``torch.load(weights_only=True)`` and JSON)."""
        out: dict[str, Any] = {
            "task": self.task,
            "source": self.source,
            "num_mapped": len(self.mapped),
            "dropped": [list(x) for x in self.dropped],
            "kept_from_target": [list(x) for x in self.kept_from_target],
            "unexpected": list(self.unexpected),
            "missing": list(self.missing),
            "mismatched": [[s, t, list(ss), list(ts)] for s, t, ss, ts in self.mismatched],
            "notes": list(self.notes),
        }
        if include_mapped:
            out["mapped"] = [list(x) for x in self.mapped]
        return out


class ConversionError(UserError, ValueError):
    """A checkpoint that cannot be converted faithfully; ``report`` holds the details."""

    def __init__(self, message: str, report: ConversionReport | None = None) -> None:
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------------------------------------- loading
class _Unresolved(dict):
    """Stand-in for a pickled object whose class cannot be imported here (e.g. an mmcv type in ``meta``)."""

    def __new__(cls, *args, **kwargs):
        return dict.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.args = args

    def __setstate__(self, state) -> None:
        self.state = state

    def append(self, item) -> None:
        self.setdefault("_items", []).append(item)

    def extend(self, items) -> None:
        self.setdefault("_items", []).extend(items)

    def __reduce__(self):  # never pickled again as the missing class
        return (dict, (dict(self),))


def _lenient_pickle_module(unresolved: list[str]) -> types.ModuleType:
    """A ``pickle`` stand-in whose unpickler replaces unimportable classes by :class:`_Unresolved` stubs.

    Only used for the ``weights_only=False`` fallback: the state dict never needs those objects (they sit next
    to it, in ``args`` / ``meta``), and the converter should not need mmcv or VPD's code installed.
    """

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                unresolved.append(f"{module}.{name}")
                return type(name, (_Unresolved,), {"__module__": module})

    module = types.ModuleType("vpd_lenient_pickle")
    module.Unpickler = Unpickler
    module.Pickler = pickle.Pickler
    module.load = lambda f, **kwargs: Unpickler(f, **kwargs).load()
    module.loads = pickle.loads
    module.dump = pickle.dump
    module.dumps = pickle.dumps
    module.UnpicklingError = pickle.UnpicklingError
    return module


def _torch_load(path: Path, weights_only: bool) -> Any:
    """``torch.load`` on the CPU, memory-mapped when the file format allows it."""
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    unresolved: list[str] = []
    if not weights_only:
        kwargs["pickle_module"] = _lenient_pickle_module(unresolved)
    try:
        obj = torch.load(str(path), mmap=True, **kwargs)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        unresolved.clear()  # a legacy (non-zip) file cannot be memory-mapped: read it plainly
        obj = torch.load(str(path), **kwargs)
    if unresolved:
        log.info("'%s': classes not importable here were unpickled as stubs: %s", path, sorted(set(unresolved)))
    return obj


def _read_checkpoint_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f"'{path}' could not be read as a safetensors file: {err}") from err
    try:
        return _torch_load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - the fallback below decides
        first_error = err
    log.info(
        "'%s' holds more than tensors (e.g. argparse.Namespace, mmcv meta), so torch.load(weights_only=True) "
        "refused it; loading it again with weights_only=False, which runs the pickle: only convert files you "
        "trust (VPD's releases). First error: %s",
        path,
        str(first_error).splitlines()[0] if str(first_error) else type(first_error).__name__,
    )
    try:
        return _torch_load(path, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(
            f"'{path}' could not be read as a PyTorch checkpoint (corrupt, truncated or not a checkpoint): "
            f"{type(err).__name__}: {err}"
        ) from err


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _extract_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint: ``{'state_dict': ...}``, ``{'model': ...}`` or plain."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module", "net"):
            if key in obj and (isinstance(obj[key], (Mapping, nn.Module))):
                inner = obj[key]
                if isinstance(inner, nn.Module) or _is_state_dict(inner):
                    return _extract_state_dict(inner, f"{where}['{key}']")
                bad = [k for k, v in inner.items() if not isinstance(v, Tensor)][:10]
                raise ValueError(
                    f"{where}['{key}'] is not a state dict: entries {bad} are not tensors"
                    if bad
                    else f"{where}['{key}'] is empty"
                )
        raise ValueError(
            f"{where} holds no state dict: expected a dict of tensors, or one under 'state_dict' (mmcv) or 'model' "
            f"(VPD depth / referring); its top-level keys are {sorted(map(str, obj.keys()))[:20]}"
        )
    raise ValueError(f"{where} holds a {type(obj).__name__}, not a checkpoint dict")


def load_original_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load the state dict of an original VPD checkpoint file.

    Handles ``{'model': ...}`` (VPD depth and referring), ``{'state_dict': ...}`` (mmcv, VPD segmentation), plain
    state dicts and ``.safetensors``. ``torch.load`` is tried with ``weights_only=True`` first; files that also
    hold Python objects (argparse ``Namespace``, mmcv ``meta``) are loaded again with ``weights_only=False``
    (logged). A ``module.`` (DataParallel / DDP) prefix is removed from every key that has it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable checkpoint, or holds no state dict (the message names the file).
    """
    return _load_original(path)[0]


def _load_original(path: str | os.PathLike) -> tuple[dict[str, Tensor], int]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    obj = _read_checkpoint_file(path)
    state_dict = _extract_state_dict(obj, f"checkpoint '{path}'")
    return _strip_module_prefix(state_dict)


def _strip_module_prefix(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """Remove (repeated) ``module.`` prefixes; returns the new dict and how many keys had one."""
    out: dict[str, Tensor] = {}
    stripped = 0
    for key, value in state_dict.items():
        new = key
        while new.startswith("module."):
            new = new[len("module.") :]
        stripped += new != key
        if new in out:
            raise ValueError(f"checkpoint key '{key}' collides with another key once its 'module.' prefix is removed")
        out[new] = value
    return out, stripped


# ------------------------------------------------------------------------------------------------- detection
def detect_task(state_dict: Mapping[str, Tensor]) -> str:
    """``'depth'``, ``'segmentation'`` or ``'referring'``, from the key layout of an original VPD checkpoint.

    Raises:
        ValueError: the keys match no task, or more than one.
    """
    keys = [k[len("module.") :] if k.startswith("module.") else k for k in state_dict]
    found = [task for task, layout in _LAYOUTS.items() if any(k.startswith(layout.markers) for k in keys)]
    if len(found) == 1:
        return found[0]
    if not found:
        sample = sorted(keys)[:8]
        raise ValueError(
            "not an original VPD checkpoint: no key starts like a depth ('encoder.unet.', 'decoder.deconv_layers.', "
            "'last_layer_depth.'), segmentation ('decode_head.', 'neck.') or referring ('classifier.') model; "
            f"first keys: {sample}"
        )
    raise ValueError(f"ambiguous VPD checkpoint: its keys match the layouts of several tasks: {found}")


def _model_task(model: nn.Module) -> str | None:
    from vpd_lightning.tasks import DepthEstimationTask, ReferringSegmentationTask, SemanticSegmentationTask

    for cls, task in (
        (DepthEstimationTask, "depth"),
        (SemanticSegmentationTask, "segmentation"),
        (ReferringSegmentationTask, "referring"),
    ):
        if isinstance(model, cls):
            return task
    return None


def original_class_embeddings(state_dict: Mapping[str, Tensor]) -> Tensor | None:
    """The ``class_embeddings`` tensor of an original depth or segmentation checkpoint (``None`` if absent)."""
    for key in ("class_embeddings", "encoder.class_embeddings"):
        for name in (key, "module." + key):
            if name in state_dict:
                return state_dict[name]
    return None


# ------------------------------------------------------------------------------------------------ conversion
def _trace(
    converter: Callable[..., dict], source: Mapping[str, Tensor], *args
) -> dict[str, tuple[str | None, tuple[int, ...]]]:
    """Run a diffusers converter on meta stand-ins: ``{output key: (source key, output shape)}``.

    The converters copy (or slice) the tensors they are given, so each output is, or is a view of, exactly one
    input; an output that is ``None`` (the converter looked up a key that is not there) maps to ``None``.
    """
    probes = {key: torch.empty(tuple(value.shape), dtype=value.dtype, device="meta") for key, value in source.items()}
    by_id = {id(probe): key for key, probe in probes.items()}
    traced: dict[str, tuple[str | None, tuple[int, ...]]] = {}
    for out_key, value in converter(probes, *args).items():
        if value is None:
            traced[out_key] = (None, ())
            continue
        base = value if value._base is None else value._base
        origin = by_id.get(id(base))
        if origin is None:  # pragma: no cover - a diffusers converter that computes new tensors
            raise RuntimeError(f"cannot trace converted key '{out_key}' back to a source key")
        traced[out_key] = (origin, tuple(value.shape))
    return traced


def _materialize(value: Tensor, shape: tuple[int, ...]) -> Tensor | None:
    """The source tensor in the converter's output shape (1x1 conv <-> linear); ``None`` if that loses data."""
    if tuple(value.shape) == shape:
        return value
    if value.numel() != int(torch.Size(shape).numel()):
        return None
    return value.reshape(shape)


def _plain(value: Any) -> Any:
    """Hyper-parameters as plain Python (safe for ``torch.load(weights_only=True)``)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return value
    return str(value)


def _keep_reason(task: str, key: str) -> str | None:
    """Why a target key absent from the source may keep the target model's value (``None``: it may not)."""
    if key.startswith(("backbone.unet.conv_norm_out.", "backbone.unet.conv_out.")):
        return f"{KEPT_ABSENT}: UNet noise-prediction head (ldm 'out.*'), never run by the backbone"
    if key.startswith("backbone.vae.post_quant_conv."):
        return f"{KEPT_ABSENT}: used only by the VAE decoder, which VPD deletes"
    if task == "referring" and key.startswith("text_encoder."):
        return f"{KEPT_ABSENT}: frozen CLIP text encoder, not stored in VPD's referring checkpoint"
    if key == "class_weights":
        return f"{KEPT_ABSENT}: cross-entropy class weights come from the configuration (model.class_weights)"
    if key.endswith(".num_batches_tracked"):
        return f"{KEPT_ABSENT}: BatchNorm update counter (unused with a set momentum)"
    return None


def convert_vpd_state_dict(
    state_dict: Mapping[str, Tensor],
    model: nn.Module,
    task: str | None = None,
    *,
    allow_unexpected: bool = False,
    allow_missing: bool = False,
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Convert an original VPD state dict into a state dict of ``model``.

    Args:
        state_dict: the original checkpoint's state dict (``module.`` prefixes are removed).
        model: the target task module (:class:`~vpd_lightning.tasks.DepthEstimationTask`,
            :class:`~vpd_lightning.tasks.SemanticSegmentationTask` or
            :class:`~vpd_lightning.tasks.ReferringSegmentationTask`), built with the checkpoint's configuration.
            Its own values fill the keys listed in ``report.kept_from_target``; it is not modified.
        task: ``'depth'``, ``'segmentation'`` or ``'referring'``; default: the model's task (or, for another
            module, the checkpoint's).
        allow_unexpected: report source keys that are not understood instead of raising.
        allow_missing: fill target keys that nothing provides from ``model`` (reported) instead of raising.

    Returns:
        ``(converted, report)``: ``model.load_state_dict(converted, strict=True)`` succeeds; tensors take the
        target's dtype.

    Raises:
        ConversionError: (a ``ValueError``) wrong task, unexpected or missing keys, or shape mismatches; the
            message names the keys and ``err.report`` has the full report.
    """
    source, stripped = _strip_module_prefix(state_dict)
    detected = detect_task(source)
    model_task = _model_task(model)
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")
    task = task or model_task or detected
    if model_task is not None and model_task != task:
        raise ConversionError(f"task='{task}' but the model is a {type(model).__name__} ({model_task})")
    if detected != task:
        raise ConversionError(
            f"the checkpoint is a VPD {detected} checkpoint (keys like {_LAYOUTS[detected].markers[0]}*), "
            f"but the target is a {task} model ({type(model).__name__}): wrong checkpoint for this task"
        )
    layout = _LAYOUTS[task]
    report = ConversionReport(task=task)
    if stripped:
        report.notes.append(f"removed the 'module.' prefix from {stripped} key(s)")

    target = model.state_dict()
    unet = getattr(getattr(model, "backbone", None), "unet", None)
    vae = getattr(getattr(model, "backbone", None), "vae", None)
    ddpm_keys = {layout.ldm + name for name in DDPM_BUFFERS}

    # Sort every source key into a group.
    found: dict[str, tuple[str, Tensor]] = {}  # target key -> (source key, tensor)
    unet_src: dict[str, Tensor] = {}  # ldm key (model.diffusion_model.*) -> tensor
    vae_src: dict[str, Tensor] = {}  # ldm key (first_stage_model.*) -> tensor
    ldm_name: dict[str, str] = {}  # ldm key -> source key
    for key, value in source.items():
        if key in ddpm_keys:
            report.dropped.append(
                (key, "DDPM noise-schedule buffer of ldm's LatentDiffusion; VPD never samples, nothing here uses it")
            )
        elif key.startswith(layout.unet) and unet is not None:
            local = _LDM_UNET + key[len(layout.unet) :]
            unet_src[local], ldm_name[local] = value, key
        elif key.startswith(layout.vae + "decoder.") and vae is not None:
            report.dropped.append((key, "VAE decoder: VPD deletes it, and so does the framework's backbone"))
        elif key.startswith(layout.vae + "loss.") and vae is not None:
            report.dropped.append((key, "autoencoder training loss (LPIPS / discriminator), not part of the model"))
        elif key.startswith(layout.vae) and vae is not None:
            local = _LDM_VAE + key[len(layout.vae) :]
            vae_src[local], ldm_name[local] = value, key
        else:
            renamed = None
            for old, new in layout.renames:
                if old.endswith(".") and key.startswith(old):
                    renamed = new + key[len(old) :]
                    break
                if key == old:
                    renamed = new
                    break
            if renamed is not None and renamed in target:
                found[renamed] = (key, value)
            else:
                report.unexpected.append(key)

    # The ldm UNet and VAE through diffusers' converters, traced key by key.
    for group, prefix, module, converter_name in (
        (unet_src, "backbone.unet.", unet, "convert_ldm_unet_checkpoint"),
        (vae_src, "backbone.vae.", vae, "convert_ldm_vae_checkpoint"),
    ):
        if not group:
            continue
        from diffusers.loaders import single_file_utils

        converter = getattr(single_file_utils, converter_name)
        traced = _trace(converter, group, dict(module.config))
        used: set[str] = set()
        for out_key, (origin, shape) in traced.items():
            if origin is None:
                continue
            used.add(origin)
            target_key = prefix + out_key
            if prefix == "backbone.vae." and out_key.startswith("decoder."):  # pragma: no cover - filtered above
                report.dropped.append((ldm_name[origin], "VAE decoder: deleted in this framework"))
                continue
            if target_key not in target:
                report.unexpected.append(ldm_name[origin])
                continue
            value = _materialize(group[origin], shape)
            if value is None:
                tshape = tuple(target[target_key].shape)
                report.mismatched.append((ldm_name[origin], target_key, tuple(group[origin].shape), tshape))
                continue
            found[target_key] = (ldm_name[origin], value)
        report.unexpected += [ldm_name[k] for k in group if k not in used]

    # Every target key: converted, kept from the target (with a reason), or missing.
    converted: dict[str, Tensor] = {}
    for key, ref in target.items():
        if key in found:
            origin, value = found[key]
            if tuple(value.shape) != tuple(ref.shape):
                report.mismatched.append((origin, key, tuple(value.shape), tuple(ref.shape)))
                continue
            if value.dtype != ref.dtype and (value.is_floating_point() or ref.is_floating_point()):
                value = value.to(ref.dtype)
            converted[key] = value
            report.mapped.append((origin, key))
            continue
        reason = _keep_reason(task, key)
        if reason is None and allow_missing:
            reason = f"{KEPT_ABSENT}: missing from the checkpoint (allow_missing)"
        if reason is None:
            report.missing.append(key)
        else:
            report.kept_from_target.append((key, reason))
        converted[key] = ref
    # Source keys renamed onto a target key that does not exist were recorded as unexpected above.

    problems = report.problems(allow_unexpected, allow_missing)
    if problems:
        raise ConversionError(
            f"cannot convert the VPD {task} checkpoint into {type(model).__name__}:\n  " + "\n  ".join(problems),
            report,
        )
    if report.unexpected:
        log.warning("ignored %d unexpected checkpoint key(s): %s", len(report.unexpected), report.unexpected)
    return converted, report


# ------------------------------------------------------------------------------------------------- writing
def lightning_checkpoint(
    state_dict: Mapping[str, Tensor], model: nn.Module, report: ConversionReport | None = None
) -> dict[str, Any]:
    """A checkpoint dict that ``Trainer.test/validate/predict(model, ckpt_path=...)`` and
    ``Task.load_from_checkpoint`` (given the non-saved modules) accept.

    It carries weights, not a training state: to fine-tune from it, load the weights into the model
    (``model.load_state_dict(ckpt['state_dict'])``) rather than resuming ``fit`` with ``ckpt_path``.
    """
    import lightning

    checkpoint: dict[str, Any] = {
        "state_dict": dict(state_dict),
        "pytorch-lightning_version": lightning.__version__,
        "hyper_parameters": _plain(dict(getattr(model, "hparams", {}))),
        "epoch": 0,
        "global_step": 0,
        # no "loops" entry: Lightning restores loop progress only when it is there, and an empty dict makes
        # trainer.test/validate fail (KeyError 'test_loop')
        "optimizer_states": [],
        "lr_schedulers": [],
        "callbacks": {},
    }
    if report is not None:
        checkpoint["vpd_conversion"] = report.to_dict(include_mapped=False)
    return checkpoint


def save_lightning_checkpoint(
    state_dict: Mapping[str, Tensor],
    model: nn.Module,
    dst: str | os.PathLike,
    report: ConversionReport | None = None,
) -> Path:
    """Write :func:`lightning_checkpoint` to ``dst`` atomically (temporary file, then ``os.replace``)."""
    dst = Path(dst).expanduser()
    dst.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = lightning_checkpoint(state_dict, model, report)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: nn.Module,
    task: str | None = None,
    *,
    allow_unexpected: bool = False,
    allow_missing: bool = False,
) -> ConversionReport:
    """Convert the original VPD checkpoint file ``src`` into a Lightning checkpoint ``dst`` for ``model``.

    ``dst`` is written only when the conversion succeeds, atomically. It holds ``state_dict`` (every key of
    ``model``), ``hyper_parameters`` (``model.hparams``), the Lightning version, empty loop / optimizer states and a
    ``vpd_conversion`` summary, so ``trainer.test(model, ckpt_path=dst)`` and
    ``model.load_state_dict(torch.load(dst)['state_dict'])`` work. ``model`` is not modified.

    Raises:
        FileNotFoundError, ValueError (incl. :class:`ConversionError`): see :func:`load_original_state_dict` and
            :func:`convert_vpd_state_dict`.
    """
    state_dict, stripped = _load_original(src)
    try:
        converted, report = convert_vpd_state_dict(
            state_dict, model, task, allow_unexpected=allow_unexpected, allow_missing=allow_missing
        )
    except ConversionError as err:
        if err.report is not None:
            err.report.source = str(src)
        raise ConversionError(f"'{src}': {err}", err.report) from err
    report.source = str(src)
    if stripped:
        report.notes.insert(0, f"removed the 'module.' prefix from {stripped} key(s)")
    save_lightning_checkpoint(converted, model, dst, report)
    return report
