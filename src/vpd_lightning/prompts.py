"""Class-name prompts turned into frozen CLIP text embeddings, cached on disk.

VPD conditions segmentation and depth on one embedding per class (ADE20K classes, NYUv2 scene types). For
depth, ``depth/dump_nyu_text_embeddings.py`` formats each name (``_`` -> space) into the 80 CLIP ImageNet
templates, runs the CLIP text model with ``max_length=20`` and averages the ``pooler_output`` (final-LayerNorm
state at the end-of-text token, no projection) over templates (vpd-reference §4.1, §3.2). This module does
the same with any text encoder, caches the result keyed by backbone family, encoder, class list, templates and max
length, and alternatively loads a tensor file such as the original ``nyu_class_embeddings.pth``.

Families (:mod:`vpd_lightning.backbone.families`): SD 2.x's ``pooler_output`` is OpenCLIP ViT-H's penultimate
layer (after the final LayerNorm) at the end token, in the 1024-wide space of SD 2's context; for SDXL the
embedding is the 2048-wide context (both encoders' penultimate layers, concatenated) at the end token
(:class:`~vpd_lightning.backbone.text.DualTextEncoder`). Embeddings of one family are never reused for another:
the family and the pooling rule are part of the cache key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "IMAGENET_TEMPLATES",
    "class_embeddings",
    "default_cache_dir",
    "encode_class_prompts",
    "load_embeddings_file",
]

#: The 80 CLIP zero-shot ImageNet prompt templates, in the order VPD's dump script uses them.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)  # fmt: skip


def default_cache_dir() -> Path:
    """``$VPD_CACHE`` or ``~/.cache/vpd_lightning``, plus ``/prompts``."""
    base = os.environ.get("VPD_CACHE") or Path.home() / ".cache" / "vpd_lightning"
    return Path(base) / "prompts"


def _templates(templates: str | Sequence[str]) -> list[str]:
    if isinstance(templates, str):
        if templates == "imagenet80":
            return list(IMAGENET_TEMPLATES)
        templates = [templates]
    templates = list(templates)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ValueError(f"prompt templates must each contain '{{}}' for the class name; got {bad or templates}")
    return templates


@torch.no_grad()
def encode_class_prompts(
    text_encoder: torch.nn.Module,
    tokenizer,
    class_names: Sequence[str],
    templates: str | Sequence[str] = "imagenet80",
    max_length: int = 20,
    batch_size: int = 256,
) -> torch.Tensor:
    """``[len(class_names), D]`` embeddings: the template-mean of the text encoder's ``pooler_output``."""
    templates = _templates(templates)
    text_encoder.eval()
    device = next(text_encoder.parameters()).device
    rows = []
    for name in class_names:
        texts = [t.format(name.replace("_", " ")) for t in templates]
        pooled = []
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(
                texts[start : start + batch_size],
                padding="max_length",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            pooled.append(text_encoder(input_ids=tokens.input_ids.to(device)).pooler_output.float())
        rows.append(torch.cat(pooled).mean(dim=0))
    return torch.stack(rows).cpu()


def _fingerprint(source: str, subfolder: str) -> dict:
    """What identifies the encoder weights: the resolved files' names, sizes and modification times."""
    folder = Path(source).expanduser() / subfolder
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".json"})
        return {
            "path": str(folder.resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        }
    try:  # a hub id: the cached snapshot path names the commit
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, f"{subfolder}/config.json")
        return {"hub": source, "snapshot": str(cached) if isinstance(cached, str) else None}
    except Exception:  # noqa: BLE001 - the fingerprint is best effort
        return {"hub": source}


def load_embeddings_file(
    path: str | os.PathLike, num_classes: int | None = None, dim: int | None = None
) -> torch.Tensor:
    """Load a ``[C, D]`` tensor file (e.g. VPD's ``nyu_class_embeddings.pth``); a dict with one tensor also works."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class embeddings file '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"class embeddings file '{path}' could not be read as a torch tensor file: {err}") from err
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        obj = obj.get("class_embeddings", tensors[0] if len(tensors) == 1 else None)
    if not isinstance(obj, torch.Tensor) or obj.ndim != 2:
        raise ValueError(f"class embeddings file '{path}' must hold one [num_classes, dim] tensor")
    if (num_classes is not None and obj.shape[0] != num_classes) or (dim is not None and obj.shape[1] != dim):
        raise ValueError(
            f"class embeddings file '{path}' holds a tensor of shape {list(obj.shape)}, expected "
            f"[{num_classes if num_classes is not None else 'C'}, {dim if dim is not None else 'D'}] "
            "(number of classes, text context width)"
        )
    return obj.float()


def class_embeddings(
    class_names: Sequence[str],
    text_encoder: str | os.PathLike | None = None,
    *,
    embeddings_file: str | os.PathLike | None = None,
    templates: str | Sequence[str] = "imagenet80",
    max_length: int = 20,
    subfolder: str = "text_encoder",
    tokenizer_subfolder: str = "tokenizer",
    cache_dir: str | os.PathLike | None = None,
    dim: int | None = None,
    tokenizer: str | os.PathLike | None = None,
    family: str | None = None,
) -> torch.Tensor:
    """Class embeddings ``[len(class_names), D]``, from a file, from the cache, or computed with CLIP.

    Args:
        class_names: the classes, in label order.
        text_encoder: diffusers-format folder or hub id holding ``text_encoder/`` and ``tokenizer/``
            (default Stable Diffusion v1.5).
        embeddings_file: a tensor file to load instead of computing (VPD's original files work).
        templates: ``"imagenet80"`` (VPD depth), one template such as ``"a photo of a {}."``, or a list.
        max_length: tokenizer length (VPD depth: 20).
        cache_dir: where computed embeddings are cached (default :func:`default_cache_dir`).
        dim: expected width, checked when given.
        tokenizer: folder or hub id holding the tokenizer (default: ``text_encoder``'s); needed when
            ``text_encoder`` is a single-file checkpoint, which holds no tokenizer.
        family: the backbone family whose text side computes them (``sdxl``: both encoders); ``None``: SD-1.5's
            rule (one encoder), or SDXL's for a folder holding ``text_encoder_2/``.
    """
    class_names = list(class_names)
    if not class_names:
        raise ValueError("class_names is empty")
    if embeddings_file is not None:
        return load_embeddings_file(embeddings_file, len(class_names), dim)
    from vpd_lightning.backbone.families import get_family
    from vpd_lightning.backbone.loading import DEFAULT_SD_PATH, _has_second_encoder, load_text_encoder, load_tokenizer

    source = str(text_encoder or (get_family(family).hub_id if family else DEFAULT_SD_PATH))
    if family is None and subfolder == "text_encoder" and _has_second_encoder(source):
        family = "sdxl"
    dual = family is not None and len(get_family(family).text_encoders) > 1
    tokenizer_source = str(tokenizer or source)
    template_list = _templates(templates)
    key_data = {
        "encoder": _fingerprint(source, subfolder),
        "tokenizer": _fingerprint(tokenizer_source, tokenizer_subfolder),
        "classes": class_names,
        "templates": template_list,
        "max_length": max_length,
        "pooling": "penultimate-concat-eos-mean" if dual else "pooler_output-mean",
        "family": family or "sd15",
    }
    if dual:
        key_data["encoder_2"] = _fingerprint(source, "text_encoder_2")
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{key}.pt"
    if cached.is_file():
        try:
            emb = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed
            emb = None
        if isinstance(emb, torch.Tensor) and emb.shape[0] == len(class_names) and (dim is None or emb.shape[1] == dim):
            return emb
    encoder = load_text_encoder(source, subfolder, family=family)
    tok = load_tokenizer(tokenizer_source, tokenizer_subfolder, vocab_size=encoder.config.vocab_size)
    emb = encode_class_prompts(encoder, tok, class_names, template_list, max_length)
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(
            f"text encoder '{source}' ({family or 'sd15'}) gives {emb.shape[1]}-wide embeddings, the UNet expects {dim}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    torch.save(emb, tmp)
    os.replace(tmp, cached)
    (cache / f"{key}.json").write_text(json.dumps(key_data, indent=1))
    return emb
