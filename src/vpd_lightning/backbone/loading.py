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

__all__ = [
    "DEFAULT_SD_PATH",
    "WeightsNotFoundError",
    "load_text_encoder",
    "load_tokenizer",
    "load_unet",
    "load_vae",
]

#: Hub id of Stable Diffusion v1.5 (the former ``runwayml/stable-diffusion-v1-5``).
DEFAULT_SD_PATH = "stable-diffusion-v1-5/stable-diffusion-v1-5"

_HOW_TO = (
    "Provide Stable Diffusion v1.5 weights in the diffusers layout in one of these ways:\n"
    "  - a local folder: `sd_path=/path/to/stable-diffusion-v1-5` (or export VPD_SD_PATH=...), holding\n"
    "    unet/, vae/, text_encoder/ and tokenizer/ (e.g. from `huggingface-cli download "
    f"{DEFAULT_SD_PATH} --local-dir DIR`);\n"
    "  - a hub id already in the local Hugging Face cache (HF_HOME), or with network access and HF_HUB_OFFLINE unset."
)


class WeightsNotFoundError(FileNotFoundError):
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


def _load(cls, source: str | os.PathLike, subfolder: str, what: str, **kwargs):
    source = str(source)
    if source.endswith((".ckpt", ".safetensors", ".pth", ".bin")):
        raise WeightsNotFoundError(
            f"{what}: '{source}' is a single-file checkpoint; this loader takes a diffusers-format folder or hub id.\n"
            + _HOW_TO
        )
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
    """Load the denoising ``UNet2DConditionModel``."""
    from diffusers import UNet2DConditionModel

    return _load(UNet2DConditionModel, source, subfolder, "UNet", **kwargs)


def load_vae(source: str | os.PathLike = DEFAULT_SD_PATH, subfolder: str = "vae", **kwargs):
    """Load the ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    return _load(AutoencoderKL, source, subfolder, "VAE", **kwargs)


def load_text_encoder(source: str | os.PathLike = DEFAULT_SD_PATH, subfolder: str = "text_encoder", **kwargs):
    """Load the CLIP ``CLIPTextModel``."""
    from transformers import CLIPTextModel

    return _load(CLIPTextModel, source, subfolder, "text encoder", **kwargs)


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
