"""Errors a user can act on, and how the command-line entry points report them.

A wrong data root, missing weights, a bad option value, an unusable checkpoint or a full disk is not a bug: the
message says what was expected and where, and a traceback through Hydra, Lightning and torch only hides it.
The error classes of this package that describe such problems derive from :class:`UserError`.

Hydra prints an exception raised inside ``instantiate`` as ``repr()`` on one line (the expected-layout
diagram of a data set then reads ``...\\n  <root>/...``), and any other exception with a stack trace. The
entry points' task functions are therefore wrapped in :func:`report_user_errors`: a :class:`UserError`
(also one wrapped by ``instantiate``) is re-raised as a Hydra "compact" error, which Hydra prints as the bare
message (real newlines, no traceback) before exiting with status 1. Any other exception (a bug) keeps its
traceback, and ``HYDRA_FULL_ERROR=1`` shows the complete one for user errors too.

A single run that fails before writing anything but Hydra's own ``.hydra/`` folder and log leaves no run
folder behind (:func:`remove_empty_run_folder`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import CompactHydraException, InstantiationException

__all__ = [
    "ConfigError",
    "MissingFileError",
    "ReportedError",
    "UserError",
    "find_user_error",
    "format_user_error",
    "full_traceback_wanted",
    "remove_empty_run_folder",
    "report_user_errors",
    "user_errors_exit",
]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable that keeps the full traceback of user errors (Hydra's own switch).
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


class UserError(Exception):
    """Mixin of the errors whose message tells the user what to fix; the CLI prints them without a traceback.

    Combine it with the built-in class that fits (``class DataFormatError(UserError, ValueError)``), so that
    ``except ValueError`` keeps working.
    """


class ConfigError(UserError, ValueError):
    """An option of the configuration is out of range or inconsistent; the message names the key."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder named by an option does not exist; the message names the option and the path."""


class ReportedError(CompactHydraException):
    """A :class:`UserError` as Hydra should print it: the message alone (Hydra shows no traceback for these)."""


def full_traceback_wanted() -> bool:
    """``HYDRA_FULL_ERROR=1``: show user errors with their complete traceback too."""
    return os.environ.get(FULL_ERROR_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def find_user_error(err: BaseException) -> UserError | None:
    """``err`` itself when it is a :class:`UserError`, or the one that ``hydra.utils.instantiate`` wrapped."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return current
        if not isinstance(current, InstantiationException):
            return None
        current = current.__cause__
    return None


def format_user_error(err: UserError) -> str:
    """``<ErrorClass>: <message>``; a DataLoader worker's copy of the traceback is left out."""
    message = str(err)
    qualified = f"{type(err).__module__}.{type(err).__qualname__}: "
    if "Original Traceback" in message and qualified in message:  # re-raised by torch from a worker process
        message = message[message.rindex(qualified) + len(qualified) :].rstrip() + " (in a DataLoader worker)"
    return f"{type(err).__name__}: {message.rstrip()}"


def _only_bookkeeping(folder: Path, hydra_subdir: str) -> bool:
    """Whether ``folder`` holds nothing of a run's progress: Hydra's ``.hydra/`` folder, top-level ``*.log``
    files, loggers' ``hparams.yaml``, empty files and empty folders only."""
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[0] == hydra_subdir or path.is_dir():
            continue
        if len(relative.parts) == 1 and path.suffix == ".log":
            continue
        if path.name == "hparams.yaml" or (path.is_file() and path.stat().st_size == 0):
            continue
        return False
    return True


def remove_empty_run_folder() -> Path | None:
    """Remove the output folder of the current single Hydra run when it holds nothing but bookkeeping (see
    :func:`_only_bookkeeping`), and its parents that this leaves empty, up to the working directory; return
    the removed folder, or ``None``.

    Only folders Hydra made for the run (they hold its ``output_subdir``, ``.hydra/``) are touched; never the
    working directory or a folder above it, and never a multirun job's folder (the sweep records the failure
    there).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    subdir = hydra_cfg.get("output_subdir")
    if hydra_cfg.get("mode") == RunMode.MULTIRUN or not subdir:
        return None
    from omegaconf import OmegaConf

    output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None, throw_on_missing=False)
    if not output_dir or output_dir == "???":  # a config composed without a run (tests, the Compose API)
        return None
    folder = Path(output_dir).resolve()
    cwd = Path.cwd().resolve()
    if folder == cwd or folder in cwd.parents or not (folder / subdir).is_dir():
        return None
    if not _only_bookkeeping(folder, subdir):
        return None
    shutil.rmtree(folder, ignore_errors=True)
    parent = folder.parent
    while parent != cwd and cwd in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent
    return None if folder.exists() else folder


def report_user_errors(task_function: F) -> F:
    """Wrap a ``@hydra.main`` task function: user errors are printed as their message alone (exit status 1),
    and a failed single run leaves no empty run folder. Put it under ``@hydra.main``."""

    @functools.wraps(task_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task_function(*args, **kwargs)
        except Exception as err:
            removed = remove_empty_run_folder()
            note = f"(removed the run folder '{removed}': nothing but the log was written)" if removed else ""
            user = find_user_error(err)
            if user is None or full_traceback_wanted():
                if note:
                    print(note, file=sys.stderr)
                raise
            raise ReportedError(format_user_error(user) + (f"\n{note}" if note else "")) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def user_errors_exit() -> Iterator[None]:
    """For entry points without Hydra (the demo): a user error prints its message on stderr and exits with
    status 1; ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    try:
        yield
    except Exception as err:
        user = find_user_error(err)
        if user is None or full_traceback_wanted():
            raise
        print(format_user_error(user), file=sys.stderr)
        print(f"\nSet the environment variable {FULL_ERROR_ENV}=1 for a complete stack trace.", file=sys.stderr)
        raise SystemExit(1) from None
