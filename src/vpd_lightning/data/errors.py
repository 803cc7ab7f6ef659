"""Errors raised by the data sets; each message names the file or option and what was expected."""

from __future__ import annotations

from vpd_lightning.utils.errors import UserError

__all__ = ["DataFormatError", "DatasetNotFoundError"]


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The data set is not where the configuration says; the message shows the expected layout."""


class DataFormatError(UserError, ValueError):
    """A file of the data set is missing, unreadable or not in the expected format."""
