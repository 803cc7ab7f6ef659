"""Checkpoint files that are never half-written, and clear errors when one cannot be written or read."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vpd_lightning.export import (
    WrongTaskError,
    _is_complete_checkpoint,
    checkpoint_task,
    config_task,
    damaged_checkpoint_error,
    format_bytes,
    read_checkpoint,
)
from vpd_lightning.utils.errors import UserError

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "check_run_checkpoint",
    "remove_stale_temp_files",
    "temp_path",
]

log = logging.getLogger(__name__)

#: A temporary file of another host is stale once it has not been written to for this long (its writer's
#: process id cannot be checked from here).
FOREIGN_TEMP_AGE_S = 3600.0


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written (usually a full disk); the message names the file, the free space
    there and about how much the checkpoint needs. The previous file of that name is left intact."""


def temp_path(path: Path) -> Path:
    """``.<name>.tmp-<host>-<pid>`` beside ``path``: the file a checkpoint is written to before it is renamed."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _temp_writer(path: Path) -> tuple[str | None, int] | None:
    """``(host, pid)`` of the process that wrote a temporary checkpoint file (host ``None`` for the
    ``.<name>.tmp-<pid>`` files of earlier versions), or ``None`` when ``path`` is not one."""
    if not path.name.startswith(".") or ".tmp-" not in path.name:
        return None
    tail = path.name.rsplit(".tmp-", 1)[1]
    host, _, pid = tail.rpartition("-")
    if not pid.isdigit():
        return None
    return (host or None), int(pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint files in ``folder`` whose writer is gone (killed during a write); return
    them.

    A file of this host is stale when its process id is no longer running (the file of a live process, this
    one included, is never touched). A file of another host (a shared file system) is stale when it has not
    been written to for :data:`FOREIGN_TEMP_AGE_S`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    here = socket.gethostname()
    removed = []
    for path in folder.glob(".*.tmp-*"):
        writer = _temp_writer(path)
        if writer is None or not path.is_file():
            continue
        host, pid = writer
        if host is None or host == here:
            stale = pid != os.getpid() and not _process_alive(pid)
        else:
            try:
                stale = time.time() - path.stat().st_mtime > FOREIGN_TEMP_AGE_S
            except FileNotFoundError:
                continue
        if stale:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            log.info("removed %s (%s), left by a checkpoint write that was cut short", path, format_bytes(size))
            removed.append(path)
    return removed


def _tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the tensor storages in a (nested) checkpoint dict, each storage counted once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        try:
            storage = obj.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without one storage
            return obj.numel() * obj.element_size()
        key = storage.data_ptr() or id(storage)
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    return 0


def _errno_of(err: BaseException) -> int | None:
    """The ``errno`` of ``err`` or of an exception in its chain (torch reports a failed write as a
    ``RuntimeError`` whose context is the ``OSError``, or the other way round)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current.errno
        current = current.__cause__ or current.__context__
    return None


def _is_write_failure(err: BaseException) -> bool:
    """An ``OSError`` or torch's ``RuntimeError`` from its zip writer (``[enforce fail at inline_container.cc``,
    ``PytorchStreamWriter failed writing file``)."""
    if isinstance(err, OSError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text)


def _write_error(path: Path, checkpoint: dict, err: BaseException) -> CheckpointWriteError:
    """What to tell the user when writing ``path`` failed: the file, the free space there, about what the
    checkpoint needs, and that the previous file is intact."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    needed = _tensor_bytes(checkpoint)
    previous = path.stat().st_size if path.is_file() else None
    code = _errno_of(err)
    full = code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(err) or (free is not None and free < needed)
    need = f"Free space in '{path.parent}': {format_bytes(free) if free is not None else 'unknown'}; "
    need += f"the checkpoint needs about {format_bytes(needed)} (the bytes of its tensors)"
    if previous is not None:
        need += f", beside the previous {path.name} ({format_bytes(previous)}) until it replaces it"
    lines = [
        f"{'no space left to write' if full else 'could not write'} checkpoint '{path}' ({type(err).__name__}: {err}).",
        need + ".",
        "Nothing half-written was left: "
        + (f"the previous {path.name} is intact." if previous is not None else f"no {path.name} was written."),
        "Free some space, or point the run at another disk (paths.output_dir=... or hydra.run.dir=...).",
    ]
    error = CheckpointWriteError("\n".join(lines))
    error.errno = code
    return error


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside its target, ``fsync`` it, then rename it into place.

    A crash, a kill or a full disk during the write leaves the previous ``last.ckpt`` intact (Lightning's own
    writer stages the file in the system temp folder and falls back to an in-place copy when that folder is on
    another file system, as on most clusters). Remote URLs (``s3://``, ...) keep Lightning's writer.

    A failed write raises :class:`CheckpointWriteError` (file, free space, size needed). Temporary files left by
    a process killed during a write are removed before the first write into a folder
    (:func:`remove_stale_temp_files`). Reading a damaged checkpoint names the file and the complete ones
    beside it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO does not take storage_options, got {storage_options!r}")
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:
            remove_stale_temp_files(path.parent)
            self._cleaned.add(path.parent)
        tmp = temp_path(path)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as err:
            tmp.unlink(missing_ok=True)  # first, so that the free space reported counts its bytes as free
            if _is_write_failure(err):
                raise _write_error(path, checkpoint, err) from err
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"weights_only": weights_only}
        if map_location is not None:
            kwargs["map_location"] = map_location
        try:
            return super().load_checkpoint(path, **kwargs)
        except Exception as err:
            local = "://" not in str(path) and Path(path).is_file()
            if local and not isinstance(err, UserError) and not _is_complete_checkpoint(Path(path)):
                raise damaged_checkpoint_error(path, err) from err
            raise


def _check_run_family(stored: str | None, cfg, path, option: str) -> None:
    """A checkpoint of another backbone topology than ``backbone.family`` is refused naming both families
    (``sd21`` and ``sd21_base`` share one: accepted), before the model is built."""
    from omegaconf import OmegaConf

    from vpd_lightning.backbone.families import FAMILIES
    from vpd_lightning.export import CheckpointError

    wanted = OmegaConf.select(cfg, "backbone.family", default=None)
    if stored is None or wanted is None or stored == wanted:
        return
    if stored in FAMILIES and wanted in FAMILIES and FAMILIES[stored].topology == FAMILIES[wanted].topology:
        return
    raise CheckpointError(
        f"{option}: '{path}' holds a backbone={stored} model, but this run is set up for backbone={wanted}; use "
        f"backbone={stored} (with {stored} weights in sd_path)"
    )


def check_run_checkpoint(path: str | os.PathLike, cfg, option: str = "ckpt_path") -> None:
    """Before a ``train``/``evaluate`` run builds anything: the checkpoint it starts from must be readable
    (:class:`~vpd_lightning.export.DamagedCheckpointError` otherwise, naming the complete checkpoints beside
    it), hold a model of the configured task (:class:`~vpd_lightning.export.WrongTaskError` otherwise) and of
    the configured backbone family's topology (:class:`~vpd_lightning.export.CheckpointError`)."""
    checkpoint = read_checkpoint(path)  # memory-mapped: cheap even for a large training checkpoint
    found, wanted = checkpoint_task(checkpoint), config_task(cfg)
    stored = list((checkpoint.get("vpd_config") or {}).get("tasks") or [])
    stored_family = ((checkpoint.get("vpd_config") or {}).get("backbone") or {}).get("family")
    del checkpoint
    _check_run_family(stored_family, cfg, path, option)
    if found == wanted == "multitask" and stored:
        from omegaconf import OmegaConf

        asked = list(OmegaConf.select(cfg, "multitask.tasks", default=None) or [])
        if asked and sorted(asked) != sorted(stored):
            raise WrongTaskError(
                f"{option}: '{path}' is a multi-task checkpoint of {', '.join(stored)}, but this run is set up for "
                f"multitask.tasks=[{','.join(asked)}]. Use multitask.tasks=[{','.join(stored)}]."
            )
    if found is not None and wanted is not None and found != wanted:
        raise WrongTaskError(
            f"{option}: '{path}' is a {found} checkpoint, but this run is set up for task={wanted}.\n"
            f"Use task={found} (with that task's data options, e.g. data.root=...)."
        )
