"""Exceptions raised by the data catalog.

Every error derives from :class:`CatalogError`; most also inherit the matching builtin so callers can catch
either (``except FileNotFoundError`` keeps working).
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base class of every data catalog error."""


class CatalogNotFoundError(CatalogError, FileNotFoundError):
    """No catalog exists in the given directory."""


class CatalogExistsError(CatalogError, FileExistsError):
    """A catalog already exists where a new one was to be created."""


class CatalogFormatError(CatalogError, ValueError):
    """A catalog file on disk is malformed or inconsistent."""


class InputFileError(CatalogError, FileNotFoundError):
    """An input file or dataset folder is missing or does not have the expected layout."""


class InputError(CatalogError, ValueError):
    """Arguments or input files (CSV, GeoJSON, mask list) cannot be interpreted."""


class ItemRejected(CatalogError, ValueError):
    """One candidate item failed validation; the message is the reason reported for it."""
