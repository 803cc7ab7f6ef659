"""Loading Stable Diffusion components with ``from_pretrained``, with one clear error when they are missing.

``source`` is a local diffusers-format folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``) or a
Hugging Face hub id. The default is Stable Diffusion v1.5 (:data:`DEFAULT_SD_PATH`). Loading never sits in
huggingface_hub's retry loop: the local cache is tried first, offline mode (``HF_HUB_OFFLINE=1``) stops
there, and online a two-second reachability check of the hub runs before any download.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from vpd_lightning.utils.errors import UserError

__all__ = [
    "DEFAULT_SD_PATH",
    "SD15_CONFIG_DIR",
    "WeightsNotFoundError",
    "clip_tokenizer_from_bpe",
    "family_config_dir",
    "is_single_file",
    "single_file_family",
    "load_text_encoder",
    "load_tokenizer",
    "load_unet",
    "load_vae",
]

#: Hub id of Stable Diffusion v1.5 (the former ``runwayml/stable-diffusion-v1-5``).
DEFAULT_SD_PATH = "stable-diffusion-v1-5/stable-diffusion-v1-5"

#: Component configurations of SD-1.5 shipped with the package, for single-file checkpoints offline.
SD15_CONFIG_DIR = Path(__file__).resolve().parent / "sd_configs" / "sd15"

SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors")

_HOW_TO = (
    "Provide Stable Diffusion v1.5 weights in the diffusers layout in one of these ways:\n"
    "  - a local folder: `sd_path=/path/to/stable-diffusion-v1-5` (or export VPD_SD_PATH=...), holding\n"
    "    unet/, vae/, text_encoder/ and tokenizer/ (e.g. from `huggingface-cli download "
    f"{DEFAULT_SD_PATH} --local-dir DIR`);\n"
    "  - a hub id already in the local Hugging Face cache (HF_HOME), or with network access and HF_HUB_OFFLINE unset."
)


class WeightsNotFoundError(UserError, FileNotFoundError):
    """Raised when a model component cannot be found; the message says what was looked for and how to fix it."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 2.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_local(source: str) -> bool:
    """A hub id is ``owner/name``; anything that exists, starts like a path or has more parts is a folder."""
    return (
        Path(source).expanduser().exists()
        or source.startswith(("/", ".", "~"))
        or "\\" in source
        or source.count("/") != 1
    )


def family_config_dir(family: str | None) -> Path:
    """The shipped component configurations of ``family`` (``None``: SD-1.5's)."""
    from vpd_lightning.backbone.families import config_dir

    return config_dir(family) if family else SD15_CONFIG_DIR


def is_single_file(source: str | os.PathLike | None) -> bool:
    """Whether ``source`` names an original-layout single-file checkpoint (``.ckpt`` / ``.safetensors``)."""
    return source is not None and str(source).endswith(SINGLE_FILE_SUFFIXES)


def _load_single_file(cls, source: str, subfolder: str, what: str, config: str | os.PathLike | None, **kwargs):
    """An SD component from an original-layout single file, with configurations from ``config`` (offline)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{what}: single-file checkpoint '{path}' does not exist.\n" + _HOW_TO)
    config_dir = Path(config).expanduser() if config else SD15_CONFIG_DIR
    if not (config_dir / subfolder / "config.json").is_file():
        raise WeightsNotFoundError(
            f"{what}: no '{subfolder}/config.json' in the single-file configuration folder '{config_dir}' "
            "(backbone.single_file_config: a diffusers-layout folder of component configs; default SD-1.5's)"
        )
    try:
        if what.startswith("text encoder"):
            from diffusers.loaders.single_file_utils import (
                create_diffusers_clip_model_from_ldm,
                load_single_file_checkpoint,
            )

            checkpoint = load_single_file_checkpoint(str(path), local_files_only=True)
            return create_diffusers_clip_model_from_ldm(
                cls, checkpoint, subfolder=subfolder, config=str(config_dir), local_files_only=True, **kwargs
            )
        return cls.from_single_file(
            str(path), config=str(config_dir), subfolder=subfolder, local_files_only=True, **kwargs
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise WeightsNotFoundError(
            f"{what}: could not load the single-file checkpoint '{path}' with the configurations of '{config_dir}' "
            f"({type(err).__name__}: {err}); a checkpoint of another family? (backbone=sd15, sd21, sd21_base, sdxl)"
        ) from err


def clip_tokenizer_from_bpe(cache_dir: str | os.PathLike | None = None, pad_token: str = "<|endoftext|>"):
    """OpenAI CLIP's tokenizer (SD-1.5's) built offline from the BPE file shipped in the package.

    ``vocab.json`` and ``merges.txt`` are derived once (the rule of CLIP's ``SimpleTokenizer``: 256 bytes, the
    same with ``</w>``, the 48,894 merges, start and end tokens; 49,408 ids) into ``cache_dir`` (default
    ``$VPD_CACHE`` or ``~/.cache/vpd_lightning``, ``/clip-tokenizer``). ``pad_token``: SD-1.5 and SDXL's first
    tokenizer pad with the end token; SD 2.x and SDXL's ``tokenizer_2`` (OpenCLIP) with ``"!"`` (id 0).
    """
    import gzip
    import json

    from transformers import CLIPTokenizer

    from vpd_lightning.backbone.tiny import bytes_to_unicode

    base = cache_dir or os.environ.get("VPD_CACHE") or Path.home() / ".cache" / "vpd_lightning"
    folder = Path(base).expanduser() / "clip-tokenizer"
    if not (folder / "vocab.json").is_file():
        lines = gzip.open(SD15_CONFIG_DIR / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").read().decode("utf-8")
        merges = lines.split("\n")[1 : 49152 - 256 - 2 + 1]
        units = list(bytes_to_unicode().values())
        vocab = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"merges.txt.{os.getpid()}"
        tmp.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        os.replace(tmp, folder / "merges.txt")
        tmp = folder / f"vocab.json.{os.getpid()}"
        tmp.write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, folder / "vocab.json")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77, pad_token=pad_token)


def single_file_family(path: str | os.PathLike) -> str:
    """The family of an original single-file checkpoint, from its text-encoder keys (only the key names are read:
    ``safetensors`` headers, or a memory-mapped ``.ckpt``): ``sdxl`` (two embedders), ``sd21`` (OpenCLIP under
    ``cond_stage_model.model.``) or ``sd15``; ``sd15`` when the file cannot be read."""
    path = Path(path).expanduser()
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            keys = set(state.get("state_dict", state))
    except Exception:  # noqa: BLE001 - unreadable here: the loaders report it with the file name
        return "sd15"
    if "conditioner.embedders.1.model.positional_embedding" in keys:
        return "sdxl"
    if "cond_stage_model.model.token_embedding.weight" in keys:
        return "sd21"
    return "sd15"


def _shipped_tokenizer(folder: Path):
    """A tokenizer folder of the component configurations: complete (``vocab.json``), or only its configuration
    files (``sd_configs/<family>``), completed with the shipped BPE vocabulary."""
    import json

    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder))
    config = folder / "tokenizer_config.json"
    pad = json.loads(config.read_text()).get("pad_token", "<|endoftext|>") if config.is_file() else "<|endoftext|>"
    return clip_tokenizer_from_bpe(pad_token=pad if isinstance(pad, str) else pad["content"])


def _load(cls, source: str | os.PathLike, subfolder: str, what: str, single_file_config=None, **kwargs):
    source = str(source)
    if source.endswith((".pth", ".bin", ".pt")):
        raise WeightsNotFoundError(
            f"{what}: '{source}' is a bare weights file, neither a diffusers-format folder nor a single-file Stable "
            "Diffusion checkpoint (.ckpt or .safetensors). For VPD's task checkpoints use "
            "scripts/convert_vpd_checkpoint.py.\n" + _HOW_TO
        )
    if is_single_file(source):
        if what == "tokenizer":  # a single file holds no tokenizer: the config folder's, else CLIP's shipped BPE
            folder = Path(single_file_config).expanduser() / subfolder if single_file_config else None
            if folder is not None and folder.is_dir():
                return _shipped_tokenizer(folder)
            # no configuration folder: the tokenizer of the file's family (SD 2.x pads with "!"), shipped
            return _shipped_tokenizer(family_config_dir(single_file_family(source)) / subfolder)
        return _load_single_file(cls, source, subfolder, what, single_file_config, **kwargs)
    if _looks_local(source):
        folder = Path(source).expanduser()
        config = folder / subfolder / "config.json" if subfolder else folder / "config.json"
        wanted = "tokenizer files" if what == "tokenizer" else "config.json"
        if what == "tokenizer":
            config = folder / subfolder
        if not config.exists():
            raise WeightsNotFoundError(
                f"{what}: looked for {wanted} in '{folder / subfolder}', which does not exist.\n" + _HOW_TO
            )
        try:
            return cls.from_pretrained(str(folder), subfolder=subfolder, **kwargs)
        except (OSError, ValueError) as err:
            raise WeightsNotFoundError(
                f"{what}: could not load from '{folder / subfolder}': {err}\n" + _HOW_TO
            ) from err
    # A hub id: the local cache first, and never huggingface_hub's retry loop.
    try:
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        cached_error = err
    if _offline():
        raise WeightsNotFoundError(
            f"{what}: hub id '{source}' (subfolder '{subfolder}') is not in the local Hugging Face cache and "
            f"offline mode is on (HF_HUB_OFFLINE=1).\n" + _HOW_TO
        ) from cached_error
    if not _hub_reachable():
        raise WeightsNotFoundError(
            f"{what}: hub id '{source}' (subfolder '{subfolder}') is not in the local Hugging Face cache and the "
            "hub cannot be reached from this machine.\n" + _HOW_TO
        ) from cached_error
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"{what}: could not load hub id '{source}' ({subfolder}): {err}\n" + _HOW_TO
        ) from err


def load_unet(source: str | os.PathLike = DEFAULT_SD_PATH, subfolder: str = "unet", **kwargs):
    """Load the denoising ``UNet2DConditionModel`` (a folder, hub id or ``.ckpt``/``.safetensors`` file)."""
    from diffusers import UNet2DConditionModel

    return _load(UNet2DConditionModel, source, subfolder, "UNet", **kwargs)


def load_vae(source: str | os.PathLike = DEFAULT_SD_PATH, subfolder: str = "vae", **kwargs):
    """Load the ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    return _load(AutoencoderKL, source, subfolder, "VAE", **kwargs)


def _has_second_encoder(source: str | os.PathLike) -> bool:
    """Whether a local diffusers folder holds SDXL's ``text_encoder_2/``."""
    source = str(source)
    return (
        not is_single_file(source) and _looks_local(source) and (Path(source).expanduser() / "text_encoder_2").is_dir()
    )


def _pad_token_id(folder: Path, default: int = 0) -> int:
    """The padding id a tokenizer folder's configuration names (``"!"`` is id 0 in CLIP's vocabulary)."""
    import json

    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return default
    pad = json.loads(config.read_text()).get("pad_token", "!")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    return {"!": 0}.get(pad, default) if pad != "<|endoftext|>" else -1


def load_text_encoder(
    source: str | os.PathLike = DEFAULT_SD_PATH, subfolder: str = "text_encoder", family: str | None = None, **kwargs
):
    """Load the frozen text side of a family: a ``CLIPTextModel`` (SD-1.5, SD 2.x), or for SDXL (``family="sdxl"``,
    or a local folder holding ``text_encoder_2/``) a :class:`~vpd_lightning.backbone.text.DualTextEncoder` of
    ``text_encoder`` and ``text_encoder_2``. A single-file checkpoint takes the family's shipped configurations
    unless ``single_file_config`` is given."""
    from transformers import CLIPTextModel

    from vpd_lightning.backbone.families import get_family

    if family is None and subfolder == "text_encoder" and _has_second_encoder(source):
        family = "sdxl"
    if is_single_file(source) and kwargs.get("single_file_config") is None:
        kwargs["single_file_config"] = family_config_dir(family)
    first = _load(CLIPTextModel, source, subfolder, "text encoder", **kwargs)
    if family is None or len(get_family(family).text_encoders) == 1:
        return first
    from transformers import CLIPTextModelWithProjection

    from vpd_lightning.backbone.text import DualTextEncoder

    second = _load(CLIPTextModelWithProjection, source, "text_encoder_2", "text encoder 2", **kwargs)
    config_root = Path(kwargs["single_file_config"]) if is_single_file(source) else Path(str(source)).expanduser()
    pad = _pad_token_id(config_root / "tokenizer_2") if config_root.is_dir() else 0
    if pad < 0:  # tokenizer_2 pads with the end token: re-padding changes nothing
        pad = first.config.vocab_size - 1
    return DualTextEncoder(first, second, pad_token_id_2=pad)


def load_tokenizer(
    source: str | os.PathLike = DEFAULT_SD_PATH,
    subfolder: str = "tokenizer",
    vocab_size: int | None = None,
    **kwargs,
):
    """Load the CLIP tokenizer and check its vocabulary.

    With ``HF_HUB_OFFLINE=1`` transformers can return a 2-token tokenizer for a hub id it does not have,
    without raising. The vocabulary is therefore checked: against ``vocab_size`` (the text encoder's) when
    given, and against a minimum of 258 tokens (bytes + start/end markers) always.
    """
    from transformers import CLIPTokenizer

    tokenizer = _load(CLIPTokenizer, source, subfolder, "tokenizer", **kwargs)
    size = len(tokenizer)
    if size < 258 or (vocab_size is not None and size != vocab_size):
        if _offline() and not _looks_local(str(source)):
            raise WeightsNotFoundError(
                f"tokenizer: hub id '{source}' (subfolder '{subfolder}') is not in the local Hugging Face cache and "
                f"offline mode is on (HF_HUB_OFFLINE=1); transformers returned a {size}-token stand-in.\n" + _HOW_TO
            )
        expected = f"{vocab_size} tokens (the text encoder's vocabulary)" if vocab_size else "at least 258 tokens"
        raise WeightsNotFoundError(
            f"tokenizer: loaded from '{source}' (subfolder '{subfolder}') with {size} tokens, expected {expected}; "
            "the tokenizer files are missing or wrong.\n" + _HOW_TO
        )
    if tokenizer.model_max_length > 10_000:
        tokenizer.model_max_length = 77
    return tokenizer
