"""Checking, before long work starts, that the folders its results go to can be written."""

from __future__ import annotations

import tempfile
from pathlib import Path


def check_writable_folder(folder: Path, what: str, error: type[Exception] = ValueError) -> None:
    """Create ``folder`` if needed and check that files can be written in it, so that a job fails before its work
    rather than after it; ``what`` names the result and the option that chose the folder. Raises ``error``."""
    if folder.exists() and not folder.is_dir():
        raise error(f"{folder}: is a file, not a folder, so {what} cannot be written in it; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise error(f"{folder}: cannot write {what} there ({exc.strerror or exc}); choose a folder you can write") \
            from None
