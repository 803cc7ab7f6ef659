"""Share exported models on the Hugging Face Hub, and load them by hub id.

**Upload.** ``python -m vpd_lightning.export ckpt_path=best.ckpt push_to_hub=org/name [private=true]`` exports
the model (:func:`vpd_lightning.export.export_model`: ``config.json``, ``model.safetensors``, the model card
``README.md`` with the hub's metadata header, class names or tokenizer) and uploads the folder in one commit
(:func:`push_to_hub`; the repository is created when it does not exist, ``private`` applies then). ``output=``
keeps a local copy; without it the folder is a temporary one. Offline (``HF_HUB_OFFLINE=1``) or without a token
(``hf auth login`` or ``HF_TOKEN``) the export stops before writing anything.

**Download.** ``Predictor.from_pretrained("org/name")``, ``load_model("org/name")`` and the command lines'
``ckpt_path=org/name`` fetch the repository's snapshot through ``huggingface_hub.snapshot_download`` into the
usual cache (``HF_HUB_CACHE``, or ``cache_dir=``), at ``revision=`` (a branch, tag or commit; default ``main``),
then load it as an exported folder. With ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) only the cache is
read. A path that exists on disk always wins over a hub id of the same spelling.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from vpd_lightning.utils.errors import UserError

__all__ = [
    "HubError",
    "check_can_push",
    "commit_operations",
    "download_model",
    "is_hub_id",
    "push_to_hub",
    "resolve_model_path",
]

#: ``namespace/name`` as the hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
#: Names ending so are files of a local checkpoint, never hub ids.
_FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".json", ".yaml")


class HubError(UserError, RuntimeError):
    """A hub id that cannot be loaded or pushed (not cached offline, no token, unknown repository ...)."""


def is_hub_id(value: Any) -> bool:
    """Whether ``value`` names a hub repository (``org/name``) rather than a local path: it is spelled like one,
    does not exist on disk and does not end like a checkpoint file."""
    if not isinstance(value, str) or not _HUB_ID.match(value) or value.lower().endswith(_FILE_SUFFIXES):
        return False
    return not Path(value).expanduser().exists()


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def download_model(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """The local folder of the hub model ``repo_id`` at ``revision`` (downloaded into the hub cache, or only read
    from it when offline / ``local_files_only``)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from vpd_lightning import __version__

    only_cache = _offline() if local_files_only is None else bool(local_files_only)
    cache = Path(cache_dir).expanduser() if cache_dir else Path(constants.HF_HUB_CACHE)
    what = f"hub model '{repo_id}' (revision {revision or 'main'})"
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=only_cache,
            token=token,
            library_name="vpd_lightning",
            library_version=__version__,
        )
    except LocalEntryNotFoundError as err:
        why = "offline (HF_HUB_OFFLINE=1 or local_files_only)" if only_cache else f"the download failed ({err})"
        raise HubError(
            f"{what}: not a local file or folder, and not in the Hugging Face cache '{cache}'; {why}. Download it "
            "once with network access, or give the path of a checkpoint file or exported folder"
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(f"{what}: the repository has no such branch, tag or commit") from err
    except RepositoryNotFoundError as err:
        raise HubError(f"{what}: no such repository (or it is private and the token cannot read it)") from err
    except HfHubHTTPError as err:
        raise HubError(f"{what}: {err}") from err
    return Path(folder)


def resolve_model_path(path: str | os.PathLike, **hub: Any) -> str | os.PathLike:
    """``path`` itself, or for a hub id (:func:`is_hub_id`) the folder of its snapshot (:func:`download_model`,
    keyword arguments ``revision``, ``cache_dir``, ``local_files_only``, ``token``)."""
    if is_hub_id(path):
        return str(download_model(str(path), **hub))
    return path


# -------------------------------------------------------------------------------------------------- upload
def check_can_push(repo_id: str, token: str | None = None) -> str:
    """The token to push with; :class:`HubError` (before anything is written) for an id that is not
    ``org/name``, in offline mode, or without a token."""
    from huggingface_hub import get_token

    if not isinstance(repo_id, str) or not _HUB_ID.match(repo_id):
        raise HubError(f"push_to_hub: '{repo_id}' is not a hub repository id (expected org/name)")
    if _offline():
        raise HubError(
            f"push_to_hub={repo_id}: offline (HF_HUB_OFFLINE=1), nothing was exported or uploaded; unset "
            "HF_HUB_OFFLINE to upload"
        )
    token = token or get_token()
    if not token:
        raise HubError(
            f"push_to_hub={repo_id}: no Hugging Face token (log in with `hf auth login` or set HF_TOKEN); nothing "
            "was exported or uploaded"
        )
    return token


def commit_operations(folder: str | os.PathLike) -> list:
    """One ``CommitOperationAdd`` per file of the exported ``folder`` (sub-folders kept, sorted by path)."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files]


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
):
    """Upload an exported folder to the hub model repository ``repo_id`` in one commit (the repository is
    created, ``private`` or public, when it does not exist); return the ``CommitInfo``."""
    from huggingface_hub import HfApi

    from vpd_lightning import __version__

    token = check_can_push(repo_id, token)
    operations = commit_operations(folder)
    if not any(op.path_in_repo == "config.json" for op in operations):
        raise HubError(f"push_to_hub: '{folder}' is not an exported vpd_lightning model (no config.json)")
    api = HfApi(token=token, library_name="vpd_lightning", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or "Upload a VPD model (vpd_lightning.export)",
        repo_type="model",
        create_pr=create_pr,
    )
