"""Building option dataclasses from plain mappings (JSON requests, config files)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def checked_values(cls: type, values: Mapping[str, Any], path_fields: Iterable[str],
                   error: type[Exception], what: str) -> dict[str, Any]:
    """``values`` ready for ``cls(**...)``: unknown keys raise ``error``; strings of path fields become Paths."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"unknown {what} options {unknown}; known: {sorted(known)}")
    path_fields = set(path_fields)
    return {k: Path(v) if k in path_fields and v is not None else v for k, v in values.items()}
